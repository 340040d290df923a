"""``ppsd sim`` end to end: the default example, outputs, and refusal of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ppsd_sim.cli.main import main
from ppsd_sim.records import RunRecord


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_example_prints_three_schemes_side_by_side():
    res = subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "sim", "--tokens", "20000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    rows = {}
    for ln in res.stdout.splitlines():
        if ln.startswith(("AR ", "EESD(", "PPSD(")):
            label, cols = ln[:34].strip(), ln[34:].split()
            rows[label.split("(")[0]] = (float(cols[1].rstrip("x")), cols[2])
    assert set(rows) == {"AR", "EESD", "PPSD"}
    assert rows["AR"][0] == pytest.approx(1.0)
    # α = 0.8 on the example: PPSD beats EESD, both beat AR, each near its closed form
    assert rows["PPSD"][0] > rows["EESD"][0] > 1.0
    for name in ("EESD", "PPSD"):
        assert rows[name][0] == pytest.approx(float(rows[name][1].rstrip("x")), rel=0.02)
    assert "illustrative" in res.stdout  # the example says it is not a measurement


def test_outputs_are_valid_records_and_a_chrome_trace(tmp_path, capsys):
    out, trace = tmp_path / "r.json", tmp_path / "t.json"
    code, _, _ = run_cli(
        [
            "sim",
            "--scheme",
            "ppsd",
            "--alpha",
            "0.9",
            "--tokens",
            "3000",
            "--out",
            str(out),
            "--chrome-trace",
            str(trace),
        ],
        capsys,
    )
    assert code == 0
    rec = RunRecord.from_dict(json.loads(out.read_text()))
    assert rec.scheme.kind == "ppsd" and rec.tokens == 3000 and rec.baseline == "ar_same_profile"
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["tid"] for e in events if e["ph"] == "X"} == {0, 1, 2, 3}
    code, _, _ = run_cli(["sim", "--tokens", "500", "--out", str(out)], capsys)
    assert code == 0 and len(json.loads(out.read_text())) == 3


def test_config_file_drives_the_run(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "profile: {uniform: {layers: 8, t_layer: 0.001, head_fraction: 0.0}}\n"
        "schemes:\n  - {kind: ppsd, stage_boundaries: [4, 8]}\n"
        "acceptance: {kind: iid, alpha: 1.0}\ntokens: 1000\nengine: fast\n"
    )
    code, stdout, err = run_cli(["sim", "--config", str(cfg), "--json"], capsys)
    assert code == 0, err
    (rec,) = json.loads(stdout)
    assert rec["speedup"] == pytest.approx(2.0, rel=1e-3)  # ideal 2 stages at α = 1
    assert rec["engine"] == "fast"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BAD_ARGS = [
    (["--alpha", "1.2"], "acceptance.alpha"),
    (["--alpha", "nan"], "acceptance.alpha"),
    (["--alpha", "-0.1"], "acceptance.alpha"),
    (["--burstiness", "1.0"], "acceptance.burstiness"),
    (["--exit", "32"], "scheme.exit_layer"),
    (["--exit", "0"], "scheme.exit_layer"),
    (["--gamma", "0"], "scheme.gamma"),
    (["--boundaries", "8,8,32"], "scheme.stage_boundaries"),
    (["--boundaries", "8,16"], "scheme.stage_boundaries"),
    (["--boundaries", "a,b"], "--boundaries"),
    (["--stages", "1"], "--stages"),
    (["--exit-stage", "4", "--stages", "4"], "scheme.exit_stage"),
    (["--devices", "0,1", "--stages", "4"], "scheme.devices"),
    (["--layers", "0", "--t-layer", "0.001"], "n_layers"),
    (["--layers", "8"], "--t-layer"),
    (["--layers", "8", "--t-layer", "-1"], "t_layer"),
    (["--hop", "-0.5"], "--hop"),
    (["--tokens", "0"], "tokens"),
    (["--engine", "fast", "--devices", "0,0,1,1"], "engine"),
    (["--alphas", "0.9,1.5"], "acceptance.alphas[1]"),
    (["--histogram", "0,0"], "acceptance.counts"),
    (["--profile", "/nonexistent/profile.json"], "--profile"),
    (["--scheme", "medusa"], "invalid choice"),
    (["--tokens", "many"], "invalid int"),
    (["--no-such-flag"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("args", "field"), BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_flags_give_one_line_and_exit_2(args, field, capsys):
    code, _, err = run_cli(
        ["sim", "--tokens", "100", *args] if "--tokens" not in args else ["sim", *args], capsys
    )
    assert code == 2
    assert field in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


BAD_FILES = [
    ("c.json", '{"tokens": 10,', "malformed JSON"),
    ("c.yaml", "tokens: [1, 2\n", "malformed YAML"),
    ("c.json", '{"tokens": 10, "colour": "red"}', "config.colour: unknown field"),
    (
        "c.json",
        '{"scheme": {"kind": "ppsd", "stage_boundaries": [4, 40]}}',
        "scheme.stage_boundaries",
    ),
    ("c.json", '{"acceptance": {"kind": "trace", "trace": []}}', "config.acceptance.trace"),
    ("c.json", '{"profile": {"uniform": {"layers": 8}}}', "config.profile.uniform.t_layer"),
    (
        "c.json",
        '{"profile": {"record": "HardwareProfile", "schema_version": 7, "layer_decode": [1], '
        '"ee_head": 0, "final_head": 0}}',
        "schema_version",
    ),
    ("c.json", '{"engine": "warp"}', "--engine"),
]


@pytest.mark.parametrize(("name", "text", "msg"), BAD_FILES, ids=[m for _, _, m in BAD_FILES])
def test_bad_config_files_give_one_line_and_exit_2(tmp_path, name, text, msg, capsys):
    code, _, err = run_cli(["sim", "--config", _write(tmp_path, name, text)], capsys)
    assert code == 2
    assert msg in err and len(err.strip().splitlines()) == 1


def test_bad_trace_file_and_empty_trace(tmp_path, capsys):
    code, _, err = run_cli(
        ["sim", "--acceptance-trace", _write(tmp_path, "t.txt", "1 0 2")], capsys
    )
    assert code == 2 and "0 and 1" in err
    code, _, err = run_cli(["sim", "--acceptance-trace", _write(tmp_path, "t.txt", "")], capsys)
    assert code == 2 and "acceptance.trace" in err


def test_a_refused_run_leaves_an_existing_output_untouched(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("precious")
    code, _, _ = run_cli(["sim", "--alpha", "2", "--out", str(out)], capsys)
    assert code == 2 and out.read_text() == "precious"


def test_console_script_reports_bad_input_without_traceback():
    # The installed console script, found beside the interpreter running the tests (never
    # through PATH: on a fresh machine the venv is not activated).
    script = Path(sysconfig.get_path("scripts")) / "ppsd"
    assert script.is_file(), f"console script not installed at {script}"
    res = subprocess.run(
        [str(script), "sim", "--alpha", "1.2"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "ppsd: error: acceptance.alpha: must be <= 1, got 1.2"
