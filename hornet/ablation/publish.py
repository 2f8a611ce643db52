"""Publishing a suite: its small result files, without checkpoints, copied into a folder kept in git.

    results/<suite>/
      suite.json, results.csv                         what `hornet report results/<suite>` reads
      interaction_strength.csv, erf.csv               the suite's analyses (`hornet analyze suite`), when run
      <variant>/seed<k>/
        result.json, config_hash                      a finished run: the suite skips it when resumed from here
        config.yaml, meta.json, metrics.csv           how it was run, on what, and its curves
        analysis/interaction_strength.csv, erf.csv    its J(m) curve with bootstrap band, its ERF areas
        analysis/erf_maps.npz                         its ERF pictures (for the suite's ERF figure)

Checkpoints, TensorBoard events, predictions and PNGs stay in runs/. Publishing is idempotent (a file is copied only
when it differs), so it can follow every finished run; copying a published suite back into runs/ lets the suite
resume on another machine without redoing the published runs. A suite is published whole: a target that holds runs
of another configuration (another config hash, or runs the suite does not have) is refused unless ``replace``, which
replaces the target folder whole, so no stale run is left beside the new ones.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hornet.analysis.probe.analyze import ERF_CSV, ERF_MAPS, RUN_ANALYSIS, STRENGTH_CSV
from hornet.files import OutputError
from hornet.runs import CONFIG_FILE, META_FILE, METRICS_FILE, RESULT_FILE, suite_runs

__all__ = ["PUBLISHED_RUN_FILES", "PUBLISHED_SUITE_FILES", "Published", "check_target", "publish_suite"]

PUBLISHED_SUITE_FILES = ("suite.json", "results.csv", STRENGTH_CSV, ERF_CSV)
PUBLISHED_RUN_FILES = (
    RESULT_FILE, "config_hash", CONFIG_FILE, META_FILE, METRICS_FILE,
    f"{RUN_ANALYSIS}/{STRENGTH_CSV}", f"{RUN_ANALYSIS}/{ERF_CSV}", f"{RUN_ANALYSIS}/{ERF_MAPS}",
)  # fmt: skip


@dataclass
class Published:
    """What one publish did: runs found, files copied (changed or new), files already up to date, bytes in target."""

    target: Path
    runs: int
    copied: int
    unchanged: int
    total_bytes: int

    def line(self) -> str:
        return (
            f"published {self.runs} runs to {self.target}: {self.copied} files copied, {self.unchanged} unchanged, "
            f"{self.total_bytes / 1e6:.2f} MB in all"
        )


def _run_hashes(suite_dir: Path) -> dict[str, str]:
    """``variant:seed`` -> config hash of every run with a result in ``suite_dir``."""
    hashes = {}
    for run in suite_runs(suite_dir):
        result = json.loads((run.path / RESULT_FILE).read_text())
        hashes[f"{result.get('variant', run.path.parent.name)}:{result.get('seed', run.name)}"] = result["config_hash"]
    return hashes


def check_target(source: Path, target: Path) -> None:
    """Refuse (ValueError) a ``target`` that holds runs of another configuration than ``source``'s."""
    if not target.is_dir():
        return
    ours, theirs = _run_hashes(source), _run_hashes(target)
    other = sorted(key for key, digest in theirs.items() if ours.get(key) != digest)
    if other:
        example = other[0]
        why = f"config hash {theirs[example]} there, {ours[example]} here" if example in ours else "not in this suite"
        raise ValueError(
            f"{target} holds {len(other)} runs of another configuration than {source} (e.g. {example}: {why}); "
            "publish with --replace to replace that folder whole, or to another folder (--to)"
        )


def publish_suite(suite_dir: str | os.PathLike, target: str | os.PathLike, *, replace: bool = False) -> Published:
    """Copy the small files of ``suite_dir`` (a suite's run folder) into ``target``; see the module docstring."""
    source, target = Path(suite_dir), Path(target)
    if not (source / "results.csv").is_file():
        raise FileNotFoundError(f"{source}: not a suite directory (no results.csv); run the suite first")
    if source.resolve() == target.resolve():
        raise ValueError(f"publishing {source} onto itself; give another target folder")
    if replace and target.is_dir():
        staged = target.with_name(f".{target.name}.{os.getpid()}.replaced")
        published = publish_suite(source, staged)  # the whole suite beside the old folder, then swapped in
        shutil.rmtree(target)
        os.replace(staged, target)
        return Published(target, published.runs, published.copied, 0, published.total_bytes)
    check_target(source, target)
    files = [name for name in PUBLISHED_SUITE_FILES if (source / name).is_file()]
    runs = list(suite_runs(source))
    for run in runs:
        relative = run.path.relative_to(source)
        files += [str(relative / name) for name in PUBLISHED_RUN_FILES if (run.path / name).is_file()]
    copied = unchanged = 0
    for name in files:
        destination = target / name
        if destination.is_file() and filecmp.cmp(source / name, destination, shallow=False):
            unchanged += 1
            continue
        temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
        try:  # whole files or nothing, as everything else a suite writes (hornet.files)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, temporary)
            os.replace(temporary, destination)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise OutputError(f"cannot publish {destination}: {err.strerror or err}") from err
        copied += 1
    total = sum((target / name).stat().st_size for name in files)
    return Published(target=target, runs=len(runs), copied=copied, unchanged=unchanged, total_bytes=total)
