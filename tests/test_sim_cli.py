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


H = ["--layers", "32", "--t-layer", "1e-3", "--head-fraction", "0.5"]
BAD_ARGS = [
    (["--alpha", "1.2"], "--alpha: must be <= 1"),
    (["--alpha", "nan"], "--alpha"),
    (["--alpha", "-0.1"], "--alpha"),
    (["--alpha", "0.8", "--burstiness", "1.0"], "--burstiness"),
    (["--exit", "32"], "--exit"),
    (["--exit", "0"], "--exit"),
    (["--gamma", "0"], "--gamma"),
    (["--boundaries", "8,8,32"], "--boundaries"),
    (["--boundaries", "8,16"], "--boundaries"),
    (["--boundaries", "a,b"], "--boundaries"),
    (["--stages", "1"], "--stages"),
    (["--exit-stage", "4", "--stages", "4"], "--exit-stage"),
    (["--devices", "0,1", "--stages", "4"], "--devices"),
    (["--layers", "0", "--t-layer", "0.001"], "--layers"),
    (["--layers", "8"], "--t-layer"),
    (["--layers", "8", "--t-layer", "-1"], "--t-layer"),
    (["--hop", "-0.5"], "--hop"),
    (["--tokens", "0"], "--tokens"),
    (["--engine", "fast", "--devices", "0,0,1,1"], "--engine"),
    (["--alphas", "0.9,1.5"], "--alphas[1]"),
    (["--histogram", "0,0"], "--histogram"),
    (["--profile", "/nonexistent/profile.json"], "--profile"),
    (["--scheme", "medusa"], "invalid choice"),
    (["--tokens", "many"], "invalid int"),
    (["--no-such-flag"], "unrecognized arguments"),
    # conflicting or incomplete flags: refused, never resolved silently (issue 10)
    (["--profile", "p.json", "--layers", "8"], "--layers: describes a uniform profile"),
    (["--profile", "p.json", "--t-layer", "1e-3"], "--t-layer"),
    (["--alpha", "0.8", "--alphas", "0.9,0.8"], "--alphas: conflicts with --alpha"),
    (["--alpha", "0.8", "--histogram", "1,2,3"], "--histogram: conflicts with --alpha"),
    (["--stages", "4", "--boundaries", "8,16,24,32"], "--stages: conflicts with --boundaries"),
    (["--burstiness", "0.5", "--alphas", "0.9,0.8"], "--burstiness: needs --alpha"),
    (["--burstiness", "0.5"], "--burstiness: needs --alpha"),
    (["--burstiness-over", "positions", "--alpha", "0.8"], "--burstiness-over: needs"),
    (["--histogram-tail", "zero", "--alpha", "0.8"], "--histogram-tail: needs --histogram"),
    (["--acceptance-rate", "0.6"], "--measured-as: is required"),
    (["--acceptance-rate", "0.6", "--measured-as", "accepted/drafted"], "--measured-gamma"),
    (
        ["--acceptance-rate", "0.6", "--measured-as", "accepted/judged", "--measured-gamma", "4"],
        "--measured-gamma: is not used",
    ),
    (
        ["--acceptance-rate", "5", "--measured-as", "tau", "--measured-gamma", "4"],
        "--acceptance-rate: must be <= 4",
    ),
    (["--acceptance-rate", "3", "--measured-as", "theoretical-speedup"], "--measured-stages"),
    (["--measured-as", "tau", "--alpha", "0.8"], "--measured-as: needs"),
    (["--measured-gamma", "4", "--alpha", "0.8"], "--measured-gamma: needs --acceptance-rate"),
    (["--alphas", "0.5,0.7", "--measured-as", "unconditional"], "--alphas[1]: unconditional"),
    (["--alpha", "0.2", "--burstiness", "-0.9"], "--burstiness: must be >= -0.25"),
    ([*H, "--stages", "4", "--histogram", "0,0,0,0,10"], "--histogram: the histogram counts"),
    ([*H, "--scheme", "eesd", "--gamma", "6", "--histogram", "1,1,1,1,10"], "--histogram"),
    (["--t-layer", "0", "--layers", "8"], "--t-layer: must be > 0"),
    (["--layers", "1", "--t-layer", "1e-3"], "--layers: EESD and PPSD need"),
    (["--layers", "4", "--t-layer", "1e-3", "--stages", "4", "--exit", "2"], "--stages: 4 stages"),
    (["--layers", "3", "--t-layer", "1e-3", "--stages", "4"], "--stages: must be <= 3"),
    (["--scheme", "eesd", "--stages", "4"], "--stages: is a PPSD flag"),
    (["--scheme", "ppsd", "--gamma", "6"], "--gamma: is an EESD flag"),
    (["--scheme", "ar", "--exit", "8"], "--exit: AR has no exit layer"),
    (["--scheme", "ar", "--alpha", "0.9"], "--alpha: AR drafts nothing"),
    (["--exit", "6", "--boundaries", "8,16,24,32"], "--exit: 6 disagrees with --boundaries"),
    (["--exit", "8", "--exit-stage", "2"], "--exit-stage"),
    (["--max-inflight", "0"], "--max-inflight"),
    (["--scheme", "eesd", "--max-inflight", "3"], "--max-inflight: is a PPSD flag"),
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
    (
        "c.json",
        '{"acceptance": {"kind": "histogram", "counts": [1, 2, 3]}}',
        "config.acceptance.tail",
    ),
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
    assert code == 2 and "--acceptance-trace" in err
    binary = tmp_path / "t.bin"
    binary.write_bytes(b"\xff\xfe1 0 1\x80")
    code, _, err = run_cli(["sim", "--acceptance-trace", str(binary)], capsys)
    assert code == 2 and "not UTF-8" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", "{}", "# only a comment\n"])
def test_an_empty_config_file_is_refused_not_replaced_by_the_example(tmp_path, text, capsys):
    code, out, err = run_cli(["sim", "--config", _write(tmp_path, "c.yaml", text)], capsys)
    assert code == 2 and "--config" in err and "is empty" in err and not out


def test_outputs_are_checked_before_work_and_written_all_or_none(tmp_path, capsys):
    # issue 10: `--out good.json --chrome-trace /ro/t.json` replaced good.json, then failed
    good = tmp_path / "good.json"
    good.write_text("precious")
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    bad = [str(a_file / "t.json"), str(tmp_path)]  # parent is a file; a folder
    if os.geteuid() != 0:  # root writes into read-only folders: that case needs a user
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        bad.append(str(ro / "t.json"))
    for trace in bad:
        code, out, err = run_cli(
            ["sim", "--tokens", "200", "--out", str(good), "--chrome-trace", trace], capsys
        )
        assert code == 2 and "--chrome-trace" in err and not out  # refused before work
        assert len(err.strip().splitlines()) == 1
        assert good.read_text() == "precious"
    code, _, err = run_cli(["sim", "--tokens", "200", "--out", str(a_file / "r.json")], capsys)
    assert code == 2 and "--out" in err
    code, _, err = run_cli(
        ["sim", "--tokens", "200", "--out", str(good), "--chrome-trace", str(good)], capsys
    )
    assert code == 2 and "same file" in err and good.read_text() == "precious"


def test_a_measured_rate_is_converted_and_the_derivation_printed_and_recorded(tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["sim", "--scheme", "eesd", "--tokens", "2000", "--out", str(out)]
    rate = ["--acceptance-rate", "0.6", "--measured-as", "accepted/drafted"]
    code, stdout, err = run_cli([*args, *rate, "--measured-gamma", "4"], capsys)
    assert code == 0, err
    assert "α = 0.8058 (i.i.d., conditional per judged draft)" in stdout
    assert "accepted ÷ drafted tokens = 0.6 at γ=4" in stdout
    rec = RunRecord.from_dict(json.loads(out.read_text()))
    assert rec.acceptance.alpha == pytest.approx(0.80581, abs=1e-5)
    assert "accepted ÷ drafted" in rec.notes["acceptance_derived"]
    # vLLM-style unconditional per-position rates become conditional α_i
    code, stdout, err = run_cli(
        [*args, "--alphas", "0.8,0.6,0.45", "--measured-as", "unconditional"], capsys
    )
    assert code == 0, err
    rec = RunRecord.from_dict(json.loads(out.read_text()))
    assert rec.acceptance.alphas == pytest.approx((0.8, 0.75, 0.75))
    # in a config file too
    cfg = _write(tmp_path, "c.yaml", "acceptance: {measured_as: tau+bonus, value: 3.5, gamma: 4}\n")
    code, stdout, err = run_cli(["sim", "--config", cfg, "--tokens", "500"], capsys)
    assert code == 0, err and "mean tokens per verification (bonus included) = 3.5" in stdout


def test_a_histogram_needs_an_explicit_tail_rule_and_its_label_shows_its_true_mean(capsys):
    # issue 10: every draft of this histogram was accepted; it used to print "mean α≈0.800"
    # and give PPSD 2.44× (α = 0 silently assumed past γ)
    base = [*H, "--stages", "4", "--tokens", "2000", "--histogram", "0,0,0,0,10"]
    code, _, err = run_cli(["sim", *base], capsys)
    assert code == 2 and "--histogram-tail" in err
    code, zero, _ = run_cli(["sim", *base, "--histogram-tail", "zero", "--json"], capsys)
    code2, rep, _ = run_cli(["sim", *base, "--histogram-tail", "repeat-last", "--json"], capsys)
    assert code == code2 == 0
    z, r = (
        {x["scheme"]["kind"]: x for x in json.loads(zero)},
        {x["scheme"]["kind"]: x for x in json.loads(rep)},
    )
    assert z["ppsd"]["speedup"] == pytest.approx(2.444, abs=0.01)  # what "zero" means
    assert r["ppsd"]["speedup"] > 3.7  # every draft accepted, as measured
    assert r["ppsd"]["flushes"] == 0 and z["ppsd"]["flushes"] > 0
    code, table, _ = run_cli(["sim", *base, "--histogram-tail", "zero"], capsys)
    assert "accepted/judged 1.000" in table and "past γ: zero" in table
    # EESD at the histogram's own γ needs no rule
    code, _, err = run_cli(["sim", *H, "--scheme", "eesd", "--histogram", "0,0,0,0,10"], capsys)
    assert code == 0, err


def test_sim_and_run_cut_the_same_stages_and_exit_applies_to_ppsd(capsys):
    from ppsd_sim.records import SchemeConfig

    code, out, err = run_cli(
        ["sim", *H, "--scheme", "ppsd", "--stages", "3", "--exit", "6", "--tokens", "50", "--json"],
        capsys,
    )
    assert code == 0, err
    (rec,) = json.loads(out)
    want = SchemeConfig.ppsd_split(32, 3, 6).stage_boundaries  # the rule `ppsd run` uses
    assert tuple(rec["scheme"]["stage_boundaries"]) == want == (6, 19, 32)
    code, out, err = run_cli(
        ["sim", *H, "--scheme", "ppsd", "--max-inflight", "2", "--tokens", "50", "--json"], capsys
    )
    assert code == 0, err
    assert json.loads(out)[0]["scheme"]["max_inflight"] == 2


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
    assert res.stderr.strip() == "ppsd: error: --alpha: must be <= 1, got 1.2"
