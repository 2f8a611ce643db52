"""Running a suite's runs side by side: worker processes, their share of the machine, and the ranks that follow.

A suite with ``ablation.workers`` > 1 (or ``auto``) starts worker processes (multiprocessing's spawn: each calls
``work`` with the suite, no command line is re-run), each with its share of the CPU threads, its own GPUs and its own
process-group address; they take runs through the run locks and publish their progress to small JSON files, which the
suite's process draws. SIGTERM / SIGINT to the suite's process stop every worker (each saves its run's checkpoint).

A run that takes several processes (DDP) has ranks 1..N-1 started by Lightning, which re-runs the command line: those
ranks follow their rank 0, which names the run it starts in a file (``LEADER_ENV``) before each fit.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hornet.files import write_json

__all__ = [
    "LEADER_ENV", "WORKER_ENV", "Leader", "follow_leader", "free_port", "is_leader", "start_worker", "stop_workers",
    "threads_of", "worker_count",
]  # fmt: skip

WORKER_ENV = "HORNET_SUITE_WORKER"  # "k/n" in the worker processes of a suite
LEADER_ENV = "HORNET_SUITE_LEADER"  # in the other ranks of a multi-process run: the file its rank 0 writes
POLL_S = 0.2


def is_leader() -> bool:
    """Whether this process is global rank 0 of its job (the others follow the same runs without writing)."""
    return all(int(os.environ.get(key, 0)) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def worker_count(setting: int | str, pending: int, devices: int) -> int:
    """Workers for a suite: ``ablation.workers``, or for ``auto`` as many runs as the machine holds side by side
    (one per GPU, or per CPU core, divided by the processes each run takes); never more than the runs to do."""
    if setting == "auto":
        gpus = torch.cuda.device_count()
        wanted = (gpus if gpus else os.cpu_count() or 1) // max(devices, 1)
    else:
        wanted = int(setting)
    return max(1, min(wanted, pending))


def threads_of(workers: int, devices: int = 1) -> int:
    """The CPU threads each of ``workers`` gets, each taking ``devices`` processes."""
    return max(1, (os.cpu_count() or 1) // (workers * devices))


def free_port() -> int:
    """A TCP port nobody listens on now: a worker's process-group address (MASTER_PORT)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_main(runner: Callable, runner_args: tuple, env: dict[str, str], threads: int, log: Path) -> None:
    """A worker process: its own session (a Ctrl-C in the terminal reaches the suite's process only), its output to
    its log, its share of the machine, then the suite's runs by function call: ``runner(*runner_args, console=...)``
    (the suite's SuiteRunner) and its ``run()``."""
    os.setsid()
    handle = log.open("w")
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    os.environ.update(env)
    torch.set_num_threads(threads)
    from rich.console import Console

    status = runner(*runner_args, console=Console(stderr=True)).run()
    sys.stdout.flush()
    sys.exit(status)


def start_worker(
    runner: Callable, runner_args: tuple, k: int, count: int, *, threads: int, gpus: list[int], workers_dir: Path
) -> multiprocessing.Process:
    """Start worker ``k`` of ``count`` with ``threads`` CPU threads (and the ``gpus``, when there are several): it
    runs ``runner(*runner_args, console=...).run()``."""
    env = {WORKER_ENV: f"{k}/{count}", "OMP_NUM_THREADS": str(threads), "MASTER_PORT": str(free_port())}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    process = multiprocessing.get_context("spawn").Process(
        target=_worker_main,
        args=(runner, runner_args, env, threads, workers_dir / f"worker{k}.log"),
        name=f"worker{k}",
    )
    process.start()
    return process


def stop_workers(processes: list[multiprocessing.Process]) -> None:
    """SIGTERM to every live worker (each saves its run and marks it interrupted), then wait for all."""
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join()


class Leader:
    """Rank 0 of multi-process runs: names the run it starts in a file its other ranks read (they inherit its path
    through the environment when Lightning starts them)."""

    def __init__(self, workers_dir: Path) -> None:
        self.path = workers_dir / f"leader-{socket.gethostname()}-{os.getpid()}.json"
        os.environ[LEADER_ENV] = str(self.path)

    def announce(self, key: str | None) -> None:
        """``key`` (variant:seed) is the next run; None: no more runs."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"run": key})

    def close(self) -> None:
        self.announce(None)
        os.environ.pop(LEADER_ENV, None)


def follow_leader(path: Path, run_one) -> None:
    """In rank > 0 of a multi-process run: run what the leader names (``run_one(key)``), until it names none or
    goes away."""
    parent, done = os.getppid(), None
    while True:
        try:
            key = json.loads(path.read_text())["run"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            key = done
        if (key is None and done is not None) or os.getppid() != parent:
            return
        if key is not None and key != done:
            run_one(key)
            done = key
        else:
            time.sleep(POLL_S)
