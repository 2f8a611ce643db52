"""The published suites (results/) are the runs their configs in experiments/ make today: a dry run of each command
against its published folder finds every run done (same resolved config hash), and no published run is left out."""

from pathlib import Path

import pytest

from hornet.ablation import AblationConfig
from hornet.ablation.plan import SuitePlan
from hornet.config import command_config
from hornet.launch import SuiteLauncher

ROOT = Path(__file__).resolve().parents[1]
E = "experiments/"
# each published suite -> the commands that made it (docs/results.md), each a list of config files and overrides
PUBLISHED = {
    "default_sweep": [
        [E + "default_sweep.yaml"],
        [E + "default_sweep.yaml", "--ablation.seeds", "[0,1,2]", "--ablation.only", "lr_8e-3_no_smoothing"],
    ],
    "detection_lr_sweep": [[E + "detection/lr_sweep.yaml"]],
    "horfpn_ablation": [[E + "horfpn_ablation.yaml"]],
    "horfpn_ablation_long": [[E + "horfpn_ablation.yaml", E + "segmentation/scenes_long.yaml"]],
    "horfpn_detection_ablation": [[E + "horfpn_detection_ablation.yaml"]],
    "horfpn_detection_ablation_long": [[E + "horfpn_detection_ablation.yaml", E + "detection/scenes_long.yaml"]],
    **{
        f"{study}_ablation{scale}": [[E + f"{study}_ablation.yaml", *extra]]
        for study in ("order", "kernel", "placement", "scale")
        for scale, extra in (("", []), ("_cpu_full", [E + "scale/cpu_full.yaml"]))
    },
    "scenes_lr_sweep": [[E + "segmentation/lr_sweep.yaml"]],
}


def test_every_published_suite_is_listed():
    assert sorted(PUBLISHED) == sorted(p.parent.name for p in (ROOT / "results").glob("*/suite.json"))


@pytest.mark.parametrize("suite", sorted(PUBLISHED))
def test_a_dry_run_against_a_published_suite_finds_every_run_done(suite, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = ROOT / "results" / suite
    planned = set()
    for command in PUBLISHED[suite]:
        argv = [arg for item in command for arg in (("--config", item) if item.endswith(".yaml") else (item,))]
        config = command_config([*argv, "--ablation.output_dir", str(folder)], "fit").config
        plan = SuitePlan(AblationConfig.from_dict(config["ablation"]), config, SuiteLauncher())
        states = plan.states()
        assert set(states.values()) == {"done"}, {key: state for key, state in states.items() if state != "done"}
        planned |= {run.run_dir(folder).path for run in plan.runs}
    assert planned == {path.parent for path in folder.glob("*/seed*/result.json")}
