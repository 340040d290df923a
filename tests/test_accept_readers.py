"""An AcceptanceRecord (``ppsd accept --out``) read directly by ``ppsd sim --acceptance-trace
RECORD@EXIT[:HEAD]``, ``ppsd plan --curve-file/--accept RECORD[@HEAD]`` and ``ppsd report``.

Oracles: PPSD judges every drafted position once and the replay walks the trace cyclically, so
after J judged drafts the accepted count is exactly (J // n) · Σ trace + Σ trace[: J mod n];
the plan's α(E) is the record's α per exit; the report's table holds the record's α. Bad
references are one line naming the flag, exit code 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.report_accept import acceptance_section
from ppsd_sim.cli.main import main
from ppsd_sim.records.acceptance_record import AcceptanceRecord, ExitAcceptance
from ppsd_sim.records.decoding import DecodingSettings
from ppsd_sim.records.profile import HardwareProfile

T1 = DecodingSettings(1.0)
T07 = DecodingSettings(0.7)
L = 6


def _traces(p: float, seed: int) -> tuple[tuple[int, ...], ...]:
    rng = random.Random(seed)
    return tuple(tuple(int(rng.random() < p) for _ in range(40)) for _ in range(3))


def _expected(seed: int) -> tuple[tuple[float, ...], ...]:
    rng = random.Random(seed)
    return tuple(tuple(round(rng.random(), 3) for _ in range(40)) for _ in range(3))


def _record(*rows: ExitAcceptance) -> AcceptanceRecord:
    return AcceptanceRecord(
        model={
            "name": "toy-lm",
            "fingerprint": "",
            "model_type": "llama",
            "n_layers": L,
            "vocab": 9,
        },
        prompts={"source": "toy-prompts", "prompt_tokens": [8, 8, 8], "new_tokens": 40},
        exits=rows,
    )


GREEDY_ROWS = (
    ExitAcceptance(1, "shared", _traces(0.3, 1)),
    ExitAcceptance(2, "shared", _traces(0.5, 2)),
    ExitAcceptance(4, "shared", _traces(0.7, 4)),
    ExitAcceptance(2, "trained", _traces(0.9, 12)),
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("accept-readers")
    recs = {
        "rec": _record(*GREEDY_ROWS),
        # a greedy and a sampled row at exit 2: the what-if's settings choose
        "both": _record(
            *GREEDY_ROWS[:2], ExitAcceptance(2, "shared", _traces(0.4, 7), T1, _expected(7))
        ),
        "t1": _record(ExitAcceptance(2, "shared", _traces(0.4, 8), T1, _expected(8))),
        "two_sampled": _record(
            ExitAcceptance(2, "shared", _traces(0.4, 8), T1, _expected(8)),
            ExitAcceptance(2, "shared", _traces(0.5, 9), T07, _expected(9)),
        ),
    }
    out = {}
    for name, rec in recs.items():
        out[name] = d / f"{name}.json"
        out[name].write_text(rec.to_json(), encoding="utf-8")
    out["profile"] = d / "p6.json"
    out["profile"].write_text(json.dumps(HardwareProfile.uniform(L, 1e-3).to_dict()))
    out["list"] = d / "plain.json"
    out["list"].write_text(json.dumps(_record(*GREEDY_ROWS).trace(2)))
    out["run"] = d / "run.json"
    out["run"].write_text(json.dumps({"record": "RunRecord"}))
    out["curve"] = d / "curve.json"
    out["curve"].write_text(json.dumps({"exits": [1, 2], "alphas": [0.3, 0.5]}))
    return out


def _ppsd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


SIM = ["--scheme", "ppsd", "--stages", "2", "--tokens", "3000", "--json"]


def _sim(files: dict[str, Path], ref: str, *extra: str, capsys=None) -> tuple[dict, str]:
    """``ppsd sim`` on the 6-layer profile: in a fresh interpreter, or (``capsys``) in this
    one, which is much faster for the many variations."""
    argv = ["sim", "--profile", str(files["profile"]), *SIM, "--acceptance-trace", ref, *extra]
    if capsys is None:
        r = _ppsd(*argv)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)[0], r.stderr
    capsys.readouterr()
    assert main(argv) == 0
    got = capsys.readouterr()
    return json.loads(got.out)[0], got.err


def _replayed(trace: list[int], judged: int) -> int:
    n = len(trace)
    return (judged // n) * sum(trace) + sum(trace[: judged % n])


def test_sim_replays_the_named_exit_and_head(files, capsys) -> None:
    rec = AcceptanceRecord.from_dict(json.loads(files["rec"].read_text(encoding="utf-8")))
    seen = set()
    for ref, (exit_layer, head) in {
        f"{files['rec']}@2": (2, "shared"),
        f"{files['rec']}@2:trained": (2, "trained"),
        f"{files['rec']}@4:shared": (4, "shared"),
    }.items():
        out, err = _sim(files, ref, capsys=None if head == "trained" else capsys)
        want = rec.trace(exit_layer, head)
        assert out["acceptance"]["trace"] == want
        obs = out["acceptance_observed"]
        assert obs["judged"] > 10 * len(want)
        assert obs["accepted"] == _replayed(want, obs["judged"])
        assert out["scheme"]["stage_boundaries"][0] == exit_layer  # drafts at the record's exit
        assert f"exit {exit_layer}, {head} head" in out["notes"]["acceptance_derived"]
        assert "warning:" not in err
        seen.add(obs["accepted"])
    assert len(seen) == 3
    plain, _ = _sim(files, str(files["list"]), "--exit", "2", capsys=capsys)  # still works
    out, _ = _sim(files, f"{files['rec']}@2", capsys=capsys)
    assert plain["acceptance_observed"] == out["acceptance_observed"]
    assert plain["tokens_per_s"] == out["tokens_per_s"]


def test_sim_takes_the_record_settings_into_the_mismatch_check(files, capsys) -> None:
    both = AcceptanceRecord.from_dict(json.loads(files["both"].read_text(encoding="utf-8")))
    out, err = _sim(files, f"{files['both']}@2", "--temperature", "1", capsys=capsys)
    assert out["acceptance"]["trace"] == both.trace(2, decoding=T1) and "warning" not in err
    out, err = _sim(files, f"{files['both']}@2", capsys=capsys)
    assert out["acceptance"]["trace"] == both.trace(2) and "warning" not in err
    out, err = _sim(files, f"{files['t1']}@2", capsys=capsys)  # only T=1 measured, a greedy what-if
    assert err.count("warning: ") == 1 and "T=1" in err
    assert "T=1" in out["notes"]["decoding_mismatch"]
    assert out["acceptance"]["decoding"]["temperature"] == 1.0
    out, err = _sim(
        files, f"{files['rec']}@4", "--exit", "3", capsys=capsys
    )  # off the measured exit
    assert "exit 4's acceptance is replayed in PPSD(k=2, E=3)" in err
    assert out["notes"]["acceptance_warnings"]


def _plan(files: dict[str, Path], *args: str, capsys=None) -> tuple[int, str, str]:
    argv = ["plan", "--profile", str(files["profile"]), "--devices", "2", "--sim-tokens", "0"]
    argv += args
    if capsys is None:
        r = _ppsd(*argv)
        return r.returncode, r.stdout, r.stderr
    capsys.readouterr()
    code = main(argv)
    got = capsys.readouterr()
    return code, got.out, got.err


def test_plan_reads_the_record_curve(files, capsys) -> None:
    rec = AcceptanceRecord.from_dict(json.loads(files["rec"].read_text(encoding="utf-8")))
    for args, head, fresh in (
        (["--curve-file", str(files["rec"])], "shared", True),
        (["--accept", f"{files['rec']}@trained"], "trained", False),
        (["--accept", str(files["rec"]), "--curve-head", "trained"], "trained", False),
    ):
        code, out, err = _plan(files, *args, "--json", capsys=None if fresh else capsys)
        assert code in (0, 1) and err == "", err
        curve = json.loads(out)["curve"]
        exits, alphas = rec.curve(head)
        assert (tuple(curve["exits"]), tuple(curve["alphas"])) == (exits, alphas)
        assert curve["source"] == "measured" and f"{head} head" in curve["note"]
    code, _, err = _plan(files, "--accept", str(files["t1"]), capsys=capsys)
    assert code in (0, 1) and err.startswith("warning: ") and "T=1" in err
    code, out, err = _plan(
        files, "--accept", str(files["t1"]), "--temperature", "1", "--json", capsys=capsys
    )
    assert err == "" and json.loads(out)["curve"]["decoding"]["temperature"] == 1.0


def test_report_has_a_measured_acceptance_section(files, tmp_path: Path) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    for name in ("rec", "profile"):
        (folder / files[name].name).write_text(files[name].read_text(encoding="utf-8"))
    out = tmp_path / "report"
    r = _ppsd("report", str(folder), "--out", str(out), "--sim-tokens", "0", "--devices", "2")
    assert r.returncode == 0, r.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    sec = md.split("## Measured acceptance", 1)[1].split("\n## ", 1)[0]
    assert "toy-lm" in sec and "toy-prompts" in sec and "greedy" in sec
    rec = AcceptanceRecord.from_dict(json.loads(files["rec"].read_text(encoding="utf-8")))
    for e in rec.exits:
        assert f"| {e.exit} | {e.head} | greedy | {e.alpha:.3f} `M` |" in sec
    assert (out / "figures" / "acceptance_1.png").stat().st_size > 1000
    assert "acceptance_1.png" in sec
    # with no AcceptanceCurve, the record of the profile's depth is the plan's α(E)
    about = md.split("## About this report", 1)[1].split("\n## ", 1)[0]
    assert "measured α(E) [E=1: " in about and "(from rec.json)" in about
    assert acceptance_section([]) is None


@pytest.mark.parametrize(
    ("args", "flag", "want"),
    [
        (["sim", "--acceptance-trace", "{rec}@3"], "", "has no exit 3 (exits measured: 1, 2, 4)"),
        (["sim", "--acceptance-trace", "{rec}@4:trained"], "", "has no trained head at exit 4"),
        (["sim", "--acceptance-trace", "{rec}@2:draft"], "", "head 'draft' is not one of shared"),
        (["sim", "--acceptance-trace", "{rec}@x"], "", "after @ comes EXIT[:HEAD]"),
        (["sim", "--acceptance-trace", "{rec}"], "", "AcceptanceRecord of exits 1, 2, 4: name"),
        (["sim", "--acceptance-trace", "{list}@2"], "", "is not an AcceptanceRecord: @2"),
        (["sim", "--acceptance-trace", "{run}"], "", "is a RunRecord: give a list of 0/1"),
        (["sim", "--acceptance-trace", "{two_sampled}@2"], "", "(T=1, T=0.7), none of them"),
        (["plan", "--accept", "{t1}@trained"], "", "has no trained head (heads measured: shared)"),
        (["plan", "--accept", "{run}"], "", "is a RunRecord: give an AcceptanceRecord"),
        (["plan", "--curve-file", "{curve}@shared"], "", "is not an AcceptanceRecord: @shared"),
        (["plan", "--curve-file", "{curve}", "--curve-head", "shared"], "--curve-head", "needs an"),
        (["plan", "--curve-head", "shared"], "--curve-head", "needs an AcceptanceRecord"),
        (["plan", "--accept", "{rec}", "--curve-file", "{rec}"], "--accept", "give either"),
        (["plan", "--accept", "{rec}@trained", "--curve-head", "shared"], "", "disagrees with"),
        (
            ["plan", "--accept", "{rec}", "--measured-as", "tau", "--measured-gamma", "4"],
            "--measured-as",
            "is an AcceptanceRecord: its α is ppsd's",
        ),
    ],
)
def test_bad_references_are_one_line(files, capsys, args: list[str], flag: str, want: str) -> None:
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    argv += ["--profile", str(files["profile"])] + (["--stages", "2"] if argv[0] == "sim" else [])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"error: {flag or args[1]}: " in err and want in err, err


def test_a_record_of_another_depth_is_refused_by_plan(files, capsys) -> None:
    capsys.readouterr()
    assert main(["plan", "--accept", str(files["rec"])]) == 2  # the 32-layer example profile
    err = capsys.readouterr().err
    assert "--accept: " in err and "measured a model of 6 layers, the profile has 32" in err


def test_a_malformed_record_is_one_line_in_a_fresh_process(files, tmp_path: Path) -> None:
    data = json.loads(files["rec"].read_text(encoding="utf-8"))
    data["exits"][0]["traces"][0][0] = 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    r = _ppsd("sim", "--acceptance-trace", f"{bad}@1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--acceptance-trace: " in r.stderr and "not a valid AcceptanceRecord" in r.stderr
    assert "traces[0][0]: must be 0 or 1" in r.stderr
