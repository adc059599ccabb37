"""`isolated_process_executor`: each step a process of its own, with nothing of the others' but storage and PostgreSQL.

A step is started as Dagster's Kubernetes executor starts a step's pod, `dagster api execute_step` from the run's
code location, but here as a local process in an empty working directory and temporary directory of its own, deleted
when it ends. A run that succeeds under it relies on no local file another step wrote: what pods need, proven on one
machine (`IMDB_STEP_EXECUTOR=process`).
"""

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from dagster import InitExecutorContext, executor, multiple_process_executor_requirements
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)

from imdb_assets.settings import cpu_count


class IsolatedProcessStepHandler(StepHandler):
    """Starts each step as a process in a folder of its own, and reports a process that died without its events."""

    def __init__(self) -> None:
        self._processes: dict[tuple[str, str], subprocess.Popen] = {}

    @property
    def name(self) -> str:
        return "IsolatedProcessStepHandler"

    @staticmethod
    def _step_key(context: StepHandlerContext) -> str:
        (step_key,) = context.execute_step_args.step_keys_to_execute or ()
        return step_key

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        args = step_handler_context.execute_step_args
        step_key = self._step_key(step_handler_context)
        folder = Path(tempfile.mkdtemp(prefix=f"imdb-step-{step_key}-"))
        work, temp = folder / "work", folder / "tmp"
        work.mkdir()
        temp.mkdir()
        env = os.environ | {
            **{item["name"]: item["value"] for item in args.get_command_env()},
            "DAGSTER_RUN_JOB_NAME": step_handler_context.dagster_run.job_name,
            "DAGSTER_RUN_STEP_KEY": step_key,
            "TMPDIR": str(temp),
            "HOME": str(folder),
        }
        process = subprocess.Popen(args.get_command_args(skip_serialized_namedtuple=True), cwd=work, env=env)
        self._processes[(args.run_id, step_key)] = process
        # Not a daemon: the run's process waits for each folder to be deleted before it exits.
        threading.Thread(target=_remove_when_done, args=(process, folder), name=f"cleanup {step_key}").start()
        yield DagsterEvent.step_worker_starting(
            step_handler_context.get_step_context(step_key),
            message=f'Executing step "{step_key}" in process {process.pid}, in {work} with TMPDIR={temp}.',
            metadata={"pid": process.pid, "working_directory": str(work), "tmpdir": str(temp)},
        )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        process = self._processes.get(
            (step_handler_context.execute_step_args.run_id, self._step_key(step_handler_context))
        )
        if process is None or process.poll() in (None, 0):
            return CheckStepHealthResult.healthy()
        return CheckStepHealthResult.unhealthy(f"the step's process exited with status {process.returncode}")

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        step_key = self._step_key(step_handler_context)
        process = self._processes.get((step_handler_context.execute_step_args.run_id, step_key))
        if process is not None and process.poll() is None:
            process.terminate()
        yield DagsterEvent.engine_event(
            step_handler_context.get_step_context(step_key),
            message=f"Stopped the process of step {step_key}",
            event_specific_data=EngineEventData(),
        )


def _remove_when_done(process: subprocess.Popen, folder: Path) -> None:
    process.wait()
    shutil.rmtree(folder, ignore_errors=True)


@executor(
    name="isolated_process",
    config_schema={"retries": get_retries_config()},
    requirements=multiple_process_executor_requirements(),
)
def isolated_process_executor(init_context: InitExecutorContext) -> StepDelegatingExecutor:
    """Each step a process of its own in an empty working and temporary directory; at most one per CPU at once."""
    return StepDelegatingExecutor(
        IsolatedProcessStepHandler(),
        retries=RetryMode.from_config(cast("dict[str, dict]", init_context.executor_config["retries"]))
        or RetryMode.ENABLED,
        max_concurrent=cpu_count(),
        sleep_seconds=0.2,
        check_step_health_interval_seconds=1,
    )
