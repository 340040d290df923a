"""`ppsd plan`'s inputs: conflicting and bad flags refused by name before any work, outputs
checked first, and a curve in another tool's measure converted per exit (and said so)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ppsd_sim.acceptance.vocabulary import alpha_from_measure
from ppsd_sim.cli.main import main

QUICK = ["--sim-tokens", "0", "--devices", "2", "--max-gamma", "4"]


def _plan(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["plan", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


BAD = [
    (["--top", "-1"], "--top: must be >= 1"),
    (["--top", "0"], "--top: must be >= 1"),
    (["--max-gamma", "0"], "--max-gamma: must be >= 1"),
    (["--sim-tokens", "-1"], "--sim-tokens: must be >= 0"),
    (["--devices", "0"], "--devices: must be >= 1"),
    (["--seed", "-3"], "--seed: must be >= 0"),
    (["--min-tokens-per-s", "0"], "--min-tokens-per-s"),
    # conflicting or incomplete flags
    (["--profile", "p.json", "--synth", "llama-2-7b@h100-sxm"], "--synth: give either"),
    (["--curve", "4:0.5", "--curve-file", "c.json"], "--curve: give either"),
    (["--measured-gamma", "4"], "--measured-gamma: needs --measured-as"),
    (["--measured-stages", "4"], "--measured-stages: needs --measured-as"),
    (["--measured-as", "tau", "--measured-gamma", "4"], "--measured-as: needs --curve"),
    (["--curve", "4:0.5", "--measured-as", "accepted/drafted"], "--measured-gamma"),
    (
        ["--curve", "4:0.5", "--measured-as", "accepted/judged", "--measured-gamma", "4"],
        "--measured-gamma: is not used",
    ),
    (["--curve", "4:3", "--measured-as", "theoretical-speedup"], "--measured-stages"),
    (["--curve", "4:5", "--measured-as", "tau", "--measured-gamma", "4"], "must be <= 4"),
]


@pytest.mark.parametrize(("args", "msg"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_and_conflicting_flags_are_one_line_naming_the_flag(
    args: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _plan([*QUICK, *args], capsys)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("ppsd: error: "), err
    assert msg in err
    assert "Traceback" not in err and not out


def test_outputs_are_checked_before_work_and_never_the_same_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "plan.json"
    keep.write_text("keep me")
    code, out, err = _plan([*QUICK, "--out", str(keep), "--write-profile", str(keep)], capsys)
    assert code == 2 and "--write-profile: is the same file as --out" in err and not out
    code, out, err = _plan([*QUICK, "--out", str(keep), "--write-profile", str(keep / "x")], capsys)
    assert code == 2 and err.startswith("ppsd: error: --write-profile: ") and not out
    assert keep.read_text() == "keep me"  # nothing written, nothing replaced


@pytest.mark.parametrize(
    ("measured_as", "size_flag", "size", "values"),
    [
        ("accepted/drafted", "--measured-gamma", 4, (0.3, 0.45)),
        ("tau+bonus", "--measured-gamma", 4, (1.8, 2.6)),
        ("theoretical-speedup", "--measured-stages", 4, (1.5, 2.2)),
    ],
)
def test_a_curve_in_another_measure_is_converted_per_exit(
    tmp_path: Path,
    measured_as: str,
    size_flag: str,
    size: int,
    values: tuple[float, float],
    capsys: pytest.CaptureFixture[str],
) -> None:
    curve = f"8:{values[0]},16:{values[1]}"
    out = tmp_path / "plan.json"
    argv = [*QUICK, "--curve", curve, "--measured-as", measured_as, size_flag, str(size)]
    code, text, err = _plan([*argv, "--out", str(out)], capsys)
    assert code == 0, err
    key = "gamma" if size_flag.endswith("gamma") else "stages"
    want = [alpha_from_measure(v, measured_as, **{key: size}) for v in values]
    alphas = json.loads(out.read_text())["curve"]["alphas"]
    assert alphas == pytest.approx(want, abs=1e-6)  # the record keeps 6 digits
    assert all(a > v / (size + 1.0) for a, v in zip(alphas, values, strict=True))
    assert "acceptance: α (i.i.d., conditional per judged draft) derived from" in text
    # the same curve given in a file, its measure named there, gives the same plan
    f = tmp_path / "curve.yaml"
    f.write_text(
        yaml.safe_dump(
            {"exits": [8, 16], "values": list(values), "measured_as": measured_as, key: size}
        )
    )
    out2 = tmp_path / "plan2.json"
    code, _, err = _plan([*QUICK, "--curve-file", str(f), "--out", str(out2)], capsys)
    assert code == 0, err
    assert json.loads(out2.read_text())["curve"]["alphas"] == pytest.approx(
        want, abs=1e-6
    )  # the record keeps 6 digits
