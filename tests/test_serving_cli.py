"""``ppsd serving``: the table, the records it writes, request files, and bad input (one line
naming the flag or the file's line, exit 2, nothing already written lost)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, Provenance
from ppsd_sim.records.io import write_record
from ppsd_sim.records.serving_record import ServingRecord
from ppsd_sim.records.workload import LengthDist
from ppsd_sim.serving.requests import load_requests


def run_ppsd(*args: str) -> subprocess.CompletedProcess:
    """The real command, as a user runs it (a fresh interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "serving", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def ppsd(capsys):
    """The same entry point in this process (fast: no interpreter start per case)."""

    def call(*args: str) -> Result:
        try:
            rc = main(["serving", *args])
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
        out = capsys.readouterr()
        return Result(rc, out.out, out.err)

    return call


def test_default_table_and_records(tmp_path: Path):
    out = tmp_path / "serve.json"
    res = run_ppsd("--requests", "30", "--tpot-slo", "0.03", "--out", str(out), "--per-request")
    assert res.returncode == 0, res.stderr
    for label in ("AR", "PP-AR(k=4)", "TP-AR(k=4)", "EESD(E=8, γ=4)", "PPSD(k=4, E=8)"):
        assert label in res.stdout
    recs = [ServingRecord.from_dict(d) for d in json.loads(out.read_text())]
    assert [r.scheme.kind for r in recs] == ["ar", "pp_ar", "tp_ar", "eesd", "ppsd"]
    assert all(r.requests == 30 and r.per_request is not None for r in recs)
    assert recs[-1].baselines["pp_ar_same_load"] == "PP-AR(k=4)"
    assert recs[-1].goodput_rps is not None


def test_request_files_csv_and_jsonl(tmp_path: Path, ppsd):
    csv = tmp_path / "reqs.csv"
    csv.write_text(
        "# two users\nprompt_tokens,output_tokens,arrival_s,alpha\n"
        "40,30,0.0,0.9\n\n60,20,0.05,0.5\n90,10,0.2,\n"
    )
    res = ppsd("--requests-file", str(csv), "--schemes", "ar,ppsd", "--alpha", "0.7", "--json")
    assert res.returncode == 0, res.stderr
    recs = json.loads(res.stdout)
    assert recs[1]["requests"] == 3 and recs[1]["workload"]["arrivals"]["kind"] == "trace"
    reqs = load_requests(csv)
    assert [r.acceptance.alpha if r.acceptance else None for r in reqs] == [0.9, 0.5, None]
    jl = tmp_path / "reqs.jsonl"
    jl.write_text(
        '{"prompt_tokens": 8, "output_tokens": 5, "acceptance_trace": "1101"}\n'
        '{"prompt_tokens": 9, "output_tokens": 6, "acceptance": {"kind": "iid", "alpha": 0.3}}\n'
    )
    assert [r.acceptance.kind for r in load_requests(jl)] == ["trace", "iid"]
    res = ppsd("--requests-file", str(jl), "--users", "1", "--schemes", "eesd")
    assert res.returncode == 0, res.stderr


def test_tp_from_a_threaded_profile(tmp_path: Path, ppsd):
    one = HardwareProfile.uniform(8, 1e-3, 0.5)
    two = HardwareProfile.uniform(8, 0.6e-3, 0.5, provenance=Provenance(threads=2))
    write_record(tmp_path / "one.json", one)
    write_record(tmp_path / "two.json", two)
    res = ppsd(
        "--profile", str(tmp_path / "one.json"), "--tp-profile", str(tmp_path / "two.json"),
        "--stages", "2", "--requests", "4", "--output", "20", "--at-once", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    recs = {r["scheme"]["kind"]: r for r in json.loads(res.stdout)}
    assert recs["tp_ar"]["speedups"]["ar_same_load"]["tpot_p50"] == pytest.approx(
        (8.5e-3) / (8 * 0.6e-3 + 0.3e-3), rel=1e-6
    )
    # without TP costs the default list leaves TP-AR out, and asking for it names the flag
    res = ppsd("--profile", str(tmp_path / "one.json"), "--schemes", "tp_ar", "--stages", "2")
    assert res.returncode == 2 and res.stderr.startswith("ppsd: error: --tp: the profile has no")


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--max-batch", "0"], "--max-batch: must be >= 1"),
        (["--kv-budget", "100"], "--kv-budget: 100 tokens cannot hold request"),
        (["--rate", "0"], "--rate: must be > 0"),
        (["--rate", "inf"], "--rate: must be finite"),
        (["--users", "0"], "--users: must be >= 1"),
        (["--think", "1"], "--think: needs --users"),
        (["--rate", "2", "--users", "3"], "--users: conflicts with --rate"),
        (["--prompt", "uniform:9:3"], "--prompt: hi must be >= lo"),
        (["--output", "lognormal:x:1"], "--output: expects a number"),
        (["--output", "0"], "--output: value must be >= 1"),
        (["--output", "poisson:3"], "--output: must be N, uniform:LO:HI"),
        (["--policy", "fastest"], "ppsd serving: error: argument --policy"),
        (["--schemes", "ar,spec"], "--schemes: must be one of"),
        (["--stages", "40"], "--stages: must be <= 32"),
        (["--alpha", "1.5"], "--alpha: must be <= 1"),
        (["--burstiness", "2"], "--burstiness: must be < 1"),
        (["--alphas", "0.9,1.2"], "--alphas[1]: must be <= 1"),
        (["--gamma", "0"], "--gamma: must be >= 1"),
        (["--max-inflight", "0"], "--max-inflight: must be >= 1"),
        (["--microbatch", "0"], "--microbatch: must be >= 1"),
        (["--seed", "-1"], "--seed: must be >= 0"),
        (["--requests", "0"], "--requests: must be >= 1"),
        (["--per-request"], "--per-request: needs --out"),
        (["--tpot-slo", "-1"], "--tpot-slo: must be > 0"),
    ],
)
def test_bad_flags_are_one_line_exit_2(args, start, ppsd):
    res = ppsd(*args)
    assert res.returncode == 2, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert start in lines[0]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "prompt_tokens,output_tokens\n10,5\n10,0\n",
            "(reqs.csv line 3) output_tokens: must be >= 1",
        ),
        (
            "prompt_tokens,output_tokens\n10,5\nten,5\n",
            "(reqs.csv line 3) prompt_tokens: must be an integer",
        ),
        ("prompt_tokens,output_tokens\n10,5,7\n", "(reqs.csv line 2): has 3 columns"),
        ("prompt,output\n10,5\n", "(reqs.csv line 1): the header must name"),
        (
            "prompt_tokens,output_tokens,alpha\n\n10,5,1.2\n",
            "(reqs.csv line 3) acceptance.alpha: must be <= 1",
        ),
        (
            "prompt_tokens,output_tokens,arrival_s\n1,2,0.5\n1,2,0.1\n",
            "workload.requests.arrival_s[1]",
        ),
        ("prompt_tokens,output_tokens,size\n1,2,3\n", "(reqs.csv line 2) size: unknown field"),
        ("prompt_tokens,output_tokens\n", "lists no requests"),
    ],
)
def test_bad_request_files_name_the_line(tmp_path: Path, text, where, ppsd):
    f = tmp_path / "reqs.csv"
    f.write_text(text)
    res = ppsd("--requests-file", str(f))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and where in res.stderr, res.stderr


def test_bad_jsonl_and_arrival_files(tmp_path: Path, ppsd):
    jl = tmp_path / "r.jsonl"
    jl.write_text('{"prompt_tokens": 3, "output_tokens": 2}\n{"prompt_tokens": 3,\n')
    res = ppsd("--requests-file", str(jl))
    assert res.returncode == 2 and "(r.jsonl line 2): malformed JSON" in res.stderr
    arr = tmp_path / "t.txt"
    arr.write_text("0.0\n0.5\n# pause\n0.25\n")
    res = ppsd("--arrivals", str(arr))
    assert (
        res.returncode == 2 and "--arrivals (t.txt line 4): must be >= the previous" in res.stderr
    )
    arr.write_text("0\n0.1\n0.3\n")
    res = ppsd("--arrivals", str(arr), "--schemes", "ar", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["requests"] == 3


def test_nothing_written_is_lost(tmp_path: Path, ppsd):
    out = tmp_path / "keep.json"
    out.write_text("precious")
    res = run_ppsd("--out", str(out), "--kv-budget", "10")
    assert res.returncode == 2 and out.read_text() == "precious"
    assert res.stderr.startswith("ppsd: error: --kv-budget:") and len(res.stderr.splitlines()) == 1
    folder = tmp_path / "dir"
    folder.mkdir()
    res = ppsd("--out", str(folder))
    assert res.returncode == 2 and "--out:" in res.stderr and "is a folder" in res.stderr


def test_library_errors_name_the_flag(tmp_path: Path, ppsd):
    """A budget is checked against the scheme with the most draft slots (so the size it
    names fits every scheme) and a missing acceptance model names --alpha."""
    res = ppsd("--kv-budget", "10", "--requests", "3", "--output", "7", "--prompt", "9")
    assert res.returncode == 2
    assert "9 + output 7 + 5 draft slots = 21); give at least 21" in res.stderr
    assert (
        ppsd("--kv-budget", "21", "--requests", "3", "--output", "7", "--prompt", "9").returncode
        == 0
    )
    w = tmp_path / "w.json"
    w.write_text('{"record": "Workload", "count": 3}')
    res = ppsd("--workload", str(w), "--schemes", "ar,ppsd")
    assert res.returncode == 2 and res.stderr.startswith(
        "ppsd: error: --alpha: an acceptance model is required for PPSD"
    )


def test_length_text_form_is_parsed():
    assert LengthDist.parse("64", "--prompt").value == 64
    assert LengthDist.parse("uniform:8:16", "--prompt").hi == 16
    ln = LengthDist.parse("lognormal:300:0.4:2000", "--prompt")
    assert (ln.median, ln.sigma, ln.hi) == (300.0, 0.4, 2000)
    with pytest.raises(ConfigError, match=r"^--prompt: sigma must be >= 0"):
        LengthDist.parse("lognormal:300:-1", "--prompt")


def test_config_file(tmp_path: Path, ppsd):
    cfg = tmp_path / "serve.yaml"
    text = (
        "schemes:\n  - {kind: ar}\n  - {kind: ppsd, stage_boundaries: [8, 16, 24, 32]}\n"
        "workload:\n  count: 12\n  prompt: {kind: uniform, lo: 10, hi: 50}\n  output: 30\n"
        "  arrivals: {kind: closed, users: 4}\n  acceptance: {kind: iid, alpha: 0.9}\n"
        "settings: {max_batch: 4, tpot_slo_s: 0.02}\nseed: 3\n"
    )
    cfg.write_text(text)
    res = ppsd("--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    recs = json.loads(res.stdout)
    assert [r["scheme"]["kind"] for r in recs] == ["ar", "ppsd"]
    assert recs[1]["seed"] == 3 and recs[1]["settings"]["max_batch"] == 4
    assert recs[1]["requests"] == 12 and recs[1]["goodput_rps"] is not None
    # a flag overrides the file
    res = ppsd("--config", str(cfg), "--max-batch", "2", "--json")
    assert json.loads(res.stdout)[0]["settings"]["max_batch"] == 2
    cfg.write_text(text.replace("max_batch: 4", "max_batch: 0"))
    res = ppsd("--config", str(cfg))
    assert res.returncode == 2 and res.stderr.strip().endswith(
        "config.settings.max_batch: must be >= 1, got 0"
    )
