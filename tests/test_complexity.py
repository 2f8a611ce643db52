"""Params and MACs against the paper's Table 1, and the `hornet profile` command."""

import subprocess
import sys
from pathlib import Path

import pytest

from hornet.analysis.measure.complexity import profile_model
from hornet.analysis.stats.paper import (
    PAPER_ADE20K_UPERNET,
    PAPER_COCO_CASCADE_3X,
    PAPER_TABLE1,
    DenseRow,
    dense_command,
)
from hornet.cli import main

FVCORE_G = {  # the paper's own fvcore figures (docs/reference.md)
    "hornet_tiny_7x7": 3.98, "hornet_tiny_gf": 3.91, "hornet_small_7x7": 8.83, "hornet_small_gf": 8.73,
    "hornet_base_7x7": 15.58, "hornet_base_gf": 15.46, "hornet_large_7x7": 34.82, "hornet_large_gf": 34.64,
    "hornet_large_gf_img384": 101.81, "hornet_base_gf_img384": 45.44,
}  # fmt: skip


@pytest.mark.parametrize("row", PAPER_TABLE1, ids=lambda r: r.name)
def test_macs_within_one_percent_of_table1(row):
    measured = profile_model(row.name)
    assert abs(measured.gmacs - row.gflops) / row.gflops < 0.01, (measured.gmacs, row.gflops)


@pytest.mark.parametrize("name", sorted(FVCORE_G))
def test_fvcore_convention_reproduces_the_paper_to_10_mega(name):
    assert abs(profile_model(name, convention="fvcore").gmacs - FVCORE_G[name]) <= 0.005 + 1e-9


def test_conv_and_linear_macs_of_tiny_7x7():
    # torch.utils.flop_counter / 2 on the 7x7 model (no FFT): 3.968 G as docs/reference.md states
    assert profile_model("hornet_tiny_7x7").gmacs == pytest.approx(3.968, abs=5e-4)


def test_profile_counts_any_timm_model():
    measured = profile_model("resnet18")
    assert measured.params == 11_689_512 and measured.gmacs == pytest.approx(1.814, abs=2e-3)


def test_profile_command_paper_table(capsys):
    assert main(["profile", "--paper", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "model,img_size,params_M,GMACs,paper_params_M,paper_GFLOPs,diff_G,diff_%,paper_top1"
    assert lines[1].startswith("hornet_tiny_7x7,224,22.41,3.968")
    assert len(lines) == 1 + len(PAPER_TABLE1)


def test_profile_command_markdown_and_img_size(capsys):
    assert main(["profile", "hornet_nano_gf", "--img-size", "64", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model | img_size | params_M | GMACs |") and "| hornet_nano_gf | 64 |" in out


def test_profile_unknown_model_is_one_line_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "hornet.cli", "profile", "hornet_tiny_gx"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "hornet: error: unknown model 'hornet_tiny_gx'; did you mean hornet_tiny_gf, hornet_tiny_7x7, nest_tiny_jx?"
    )
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "hornet.cli", "--debug", "profile", "hornet_tiny_gx"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_the_release_dense_tables_in_code_match_the_reference_docs():
    """hornet.analysis.stats.paper's ADE20K and COCO rows are the values docs/reference.md quotes from the release."""
    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text().split())
    coco = text.split("**COCO val, Cascade Mask R-CNN")[1].split("**ADE20K")[0]
    ade = text.split("**ADE20K val, UperNet")[1].split("The release has HorFPN")[0]
    size = {"tiny": "T", "small": "S", "base": "B", "large": "L"}

    def label(row: DenseRow) -> str:
        _, scale, mixer = row.backbone.split("_")
        return f"{size[scale]}-{'GF' if mixer == 'gf' else '7x7'}"

    for row in PAPER_COCO_CASCADE_3X:
        assert f"{label(row)} {row.first} / {row.second}, {row.params_m}M, {row.gflops}G" in coco, row
    for row in PAPER_ADE20K_UPERNET:
        crops = (f"{row.crop},", f"(printed {row.crop}),")
        assert any(f"{label(row)} {c} {row.first} / {row.second}, {row.params_m}M, {row.gflops}G" in ade for c in crops)
    assert len({r.backbone for r in PAPER_ADE20K_UPERNET}) == len(PAPER_ADE20K_UPERNET) == 8
    assert dense_command("coco", PAPER_COCO_CASCADE_3X[0]).count("--model.init_args.backbone hornet_tiny_7x7") == 1
