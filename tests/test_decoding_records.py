"""Decoding settings on acceptance records: greedy by default and for old files, carried
through every record, and a what-if at other settings than its acceptance's is flagged by
``ppsd sim`` and ``ppsd plan`` (a warning line and a field in the output), never mixed
silently. Bad flags are one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.curves import AcceptanceCurve
from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_record import AcceptanceRecord, ExitAcceptance
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.decoding import GREEDY, DecodingSettings, mismatch

T1 = DecodingSettings(1.0)
T1P = DecodingSettings(1.0, None, 0.9)


def test_settings_round_trip_and_old_files_read_as_greedy() -> None:
    for d in (GREEDY, T1, T1P, DecodingSettings(0.7, 40, 0.95)):
        assert DecodingSettings.from_dict(d.to_dict()) == d
    assert DecodingSettings.from_dict(None) == GREEDY
    assert DecodingSettings.from_dict({"temperature": 1}) == T1
    spec = AcceptanceSpec.iid(0.6).with_decoding(T1P)
    back = AcceptanceSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.decoding == T1P and "T=1 top-p=0.9" in back.label()
    old = AcceptanceSpec.iid(0.6).to_dict()
    assert "decoding" not in old  # greedy files are written as before
    assert AcceptanceSpec.from_dict(old).decoding == GREEDY
    with pytest.raises(ConfigError, match=r"^acceptance\.decoding\.top_p: must be in \(0, 1\]"):
        AcceptanceSpec.from_dict({**old, "decoding": {"temperature": 1, "top_p": 1.5}})
    with pytest.raises(ConfigError, match="has no effect at temperature 0"):
        DecodingSettings(0.0, 5)


def test_mismatch_names_both_settings() -> None:
    assert mismatch(GREEDY, GREEDY) is None and mismatch(T1P, T1P) is None
    msg = mismatch(GREEDY, T1)
    assert msg is not None and "greedy" in msg and "T=1" in msg
    assert mismatch(T1, T1P) is not None  # top-p alone changes acceptance too


def _row(dec: DecodingSettings, exp: tuple | None) -> ExitAcceptance:
    return ExitAcceptance(2, "shared", ((1, 0, 1), (0, 1)), dec, exp)


def _record(rows: tuple[ExitAcceptance, ...]) -> AcceptanceRecord:
    return AcceptanceRecord(
        model={"name": "m", "fingerprint": "", "model_type": "llama", "n_layers": 4, "vocab": 9},
        prompts={"source": "x", "prompt_tokens": [3, 3], "new_tokens": 3},
        exits=rows,
    )


def test_record_holds_one_curve_per_setting() -> None:
    exp = ((0.9, 0.2, 0.7), (0.1, 0.6))
    rec = _record((_row(GREEDY, None), _row(T1, exp)))
    back = AcceptanceRecord.from_dict(json.loads(rec.to_json()))
    assert back == rec and back.decoding == "per_row" and back.decodings() == [GREEDY, T1]
    assert back.curve("shared") == ((2,), (3 / 5,))
    assert back.curve("shared", decoding=T1) == ((2,), (pytest.approx(2.5 / 5),))
    with pytest.raises(ConfigError, match=r"at T=1 top-p=0\.9 decoding"):
        back.curve("shared", decoding=T1P)
    greedy_only = json.loads(_record((_row(GREEDY, None),)).to_json())
    assert greedy_only["decoding"] == "greedy" and "decoding" not in greedy_only["exits"][0]
    with pytest.raises(ConfigError, match="expected: is required for a sampled row"):
        _row(T1, None)
    with pytest.raises(ConfigError, match=r"expected\[1\]: needs 2 values"):
        _row(T1, ((0.5, 0.5, 0.5), (0.5,)))
    with pytest.raises(ConfigError, match="twice"):
        _record((_row(T1, exp), _row(T1, exp)))


def _sim_json(args: list[str], capsys) -> tuple[list[dict], str]:
    assert main(["sim", "--tokens", "200", "--json", *args]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_sim_flags_a_what_if_at_other_settings(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"acceptance": AcceptanceSpec.iid(0.7).with_decoding(T1).to_dict()}))
    recs, err = _sim_json(["--config", str(cfg)], capsys)  # the what-if is greedy by default
    assert err.startswith("warning: ") and err.count("\n") == 1
    assert all("T=1" in r["notes"]["decoding_mismatch"] for r in recs)
    assert all(r["acceptance"]["decoding"]["temperature"] == 1.0 for r in recs if "acceptance" in r)
    recs, err = _sim_json(["--config", str(cfg), "--temperature", "1"], capsys)
    assert err == "" and all("decoding_mismatch" not in r["notes"] for r in recs)
    assert all(r["notes"]["decoding"]["temperature"] == 1.0 for r in recs)
    recs, err = _sim_json(["--temperature", "1", "--top-p", "0.9"], capsys)  # greedy α
    assert "warning" in err and all("decoding_mismatch" in r["notes"] for r in recs)
    recs, err = _sim_json([], capsys)  # greedy against greedy: nothing added
    assert err == "" and all("decoding" not in r["notes"] for r in recs)
    trace = tmp_path / "t.json"  # ppsd accept --trace-out of a sampled setting
    trace.write_text(json.dumps({"trace": [1, 0, 1, 1], "decoding": T1P.to_dict()}))
    recs, err = _sim_json(["--acceptance-trace", str(trace), "--temperature", "1"], capsys)
    assert "T=1 top-p=0.9" in err


def test_plan_flags_a_curve_measured_at_other_settings(tmp_path: Path, capsys) -> None:
    curve = AcceptanceCurve((2, 6), (0.4, 0.8), "measured", "", T1)
    path = tmp_path / "curve.json"
    path.write_text(json.dumps(curve.to_dict()))
    assert AcceptanceCurve.from_dict(json.loads(path.read_text())) == curve
    out = tmp_path / "plan.json"
    main(["plan", "--curve-file", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "T=1" in err
    plan = json.loads(out.read_text())
    assert "warning: " in plan["message"] and plan["curve"]["decoding"]["temperature"] == 1.0
    main(["plan", "--curve-file", str(path), "--temperature", "1", "--out", str(out)])
    assert capsys.readouterr().err == "" and "warning" not in json.loads(out.read_text())["message"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--temperature", "-1"], "--temperature"),
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "1", "--top-p", "0"], "--top-p"),
        (["--temperature", "1", "--top-k", "0"], "--top-k"),
        (["--top-k", "5"], "--top-k"),  # greedy: refused, not silently ignored
    ],
)
def test_bad_decoding_flags_are_one_line(args: list[str], flag: str, capsys) -> None:
    for cmd in ("sim", "plan"):
        assert main([cmd, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err and "Traceback" not in err


def test_exit_code_through_the_interpreter() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "sim", "--top-p", "2", "--temperature", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--top-p" in r.stderr
