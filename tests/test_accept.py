"""``ppsd accept``: the traces are what the real decoders judge, the project's model card is
reproduced, the record is read by sim and plan, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppsd_real import accept, runner
from ppsd_real.drafters import DrafterSpec
from ppsd_real.lm.heads import load_heads
from ppsd_real.model_loading import ModelSpec, model_fingerprint
from ppsd_sim.cli.main import main
from ppsd_sim.records import SchemeConfig
from ppsd_sim.records.acceptance_record import AcceptanceRecord, eesd_rounds
from tests.arch_helpers import SHIPPED, one_thread, scratch, with_tokenizer  # noqa: F401

SHIPPED_SPEC = ModelSpec(preset=None, path=str(SHIPPED))


def _ppsd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_traces_are_what_ppsd_and_eesd_judge() -> None:
    """The oracle: PPSD with the early-exit drafter judges every position once, so its trace
    is the accept trace bit for bit; EESD judges the rounds replayed from the second
    position (it may stop a round early at the end of the run)."""
    m = runner.load(SHIPPED_SPEC)
    prompts = accept.stdlib_held_out(str(SHIPPED), 1, 40)
    n = 50
    for p in prompts:
        rec = accept.measure(m, [p], n, (2, 4), progress=False)
        for e in (2, 4):
            trace = rec.trace(e)
            scheme = SchemeConfig.ppsd_split(m.n_layers, 2, e)
            pp = runner.run_local(m, scheme, DrafterSpec(), list(p.ids), n, None)
            assert pp.trace == trace
            for g in (1, 3):
                ee = runner.run_local(
                    m, SchemeConfig.eesd(e, g), DrafterSpec(), list(p.ids), n, None
                )
                rounds = eesd_rounds(trace[1:], g)
                judged = [b for a in rounds for b in [1] * a + ([0] if a < g else [])]
                short, long_ = sorted((ee.trace, judged), key=len)
                assert long_[: len(short)] == short and len(long_) - len(short) <= g + 1
                assert all(
                    x <= y
                    for x, y in zip(ee.histogram, rec.of(e).gamma_stats(g).histogram, strict=True)
                )


@pytest.mark.slow
def test_accept_reproduces_the_model_card() -> None:
    """~10 s: the card's own protocol (16 held-out prompts × 128 greedy tokens, both heads)
    is 2,048 judged drafts per exit; fewer would not test "within sampling error"."""
    card = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))
    g = card["greedy_eval"]
    m = runner.load(SHIPPED_SPEC)
    heads = load_heads(SHIPPED, model_fingerprint(SHIPPED_SPEC), m.driver.parts.lm_head)
    prompts = accept.stdlib_held_out(str(SHIPPED), g["prompts"], g["prompt_len"])
    rec = accept.measure(m, prompts, g["new_tokens"], (1, 2, 3, 4, 5), heads=heads, progress=False)
    for row in card["exits"]:
        for head in ("shared", "trained"):
            got = rec.of(row["exit"], head)
            want = row[head]["alpha_greedy"]
            assert abs(got.alpha - want) <= 3 * got.alpha_se, (row["exit"], head, got.alpha, want)
            assert got.judged == g["prompts"] * g["new_tokens"]


@pytest.mark.slow
def test_cli_writes_a_record_that_sim_and_plan_read() -> None:
    """~8 s: the command as a user runs it (a fresh interpreter), then sim (another) and plan
    on what it wrote."""
    spec = with_tokenizer("qwen3")
    d = scratch("accept-cli")
    pf = d / "prompts.jsonl"
    pf.write_text(
        json.dumps({"prompt": "def add(a, b):\n    return"})
        + "\n\n"
        + json.dumps({"prompt": "import os\nimport sys\n"})
        + "\n",
        encoding="utf-8",
    )
    out, curve, trace = d / "acc.json", d / "curve.json", d / "trace.json"
    r = _ppsd(
        "accept",
        "--model-dir",
        spec.path or "",
        "--prompt-file",
        str(pf),
        "--tokens",
        "12",
        "--exits",
        "1,3",
        "--gammas",
        "2,4",
        "--out",
        str(out),
        "--curve-out",
        str(curve),
        "--trace-out",
        str(trace),
        "--trace-exit",
        "3",
        "--show-text",
    )
    assert r.returncode == 0, r.stderr
    assert "prompts.jsonl:1" in r.stdout and "prompts.jsonl:3" in r.stdout
    rec = AcceptanceRecord.from_dict(json.loads(out.read_text(encoding="utf-8")))
    assert [e.exit for e in rec.exits] == [1, 3] and rec.prompts["new_tokens"] == 12
    assert all(len(t) == 12 for e in rec.exits for t in e.traces)
    assert rec.model["fingerprint"] == model_fingerprint(spec)
    from analysis.curves import read_curve

    c = read_curve(curve)
    assert c.exits == (1, 3) and c.source == "measured"
    assert c.alphas == rec.curve()[1]
    sim = _ppsd("sim", "--scheme", "ppsd", "--acceptance-trace", str(trace), "--json")
    assert sim.returncode == 0, sim.stderr
    # the answer for this model: its measured α(E) on a profile synthesised from its config
    synth = f"{spec.path}@cpu-2core-epyc"
    assert main(["plan", "--synth", synth, "--curve-file", str(curve), "--devices", "2"]) == 0
    # ... and the record itself, read directly: one exit's trace, the α(E) curve
    sim = _ppsd("sim", "--scheme", "ppsd", "--acceptance-trace", f"{out}@3", "--json")
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)[0]["acceptance"]["trace"] == rec.trace(3)
    assert json.loads(trace.read_text(encoding="utf-8"))["trace"] == rec.trace(3)
    assert main(["plan", "--synth", synth, "--accept", str(out), "--devices", "2"]) == 0


def _refused(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_one_line_and_loses_nothing(capsys, tmp_path: Path) -> None:
    spec = with_tokenizer("qwen3")
    out = tmp_path / "keep.json"
    out.write_text("precious\n", encoding="utf-8")
    base = ["accept", "--model-dir", spec.path or "", "--out", str(out), "--no-progress"]
    assert "--model-dir" in _refused(
        capsys, "accept", "--model-dir", str(tmp_path), "--prompt", "x"
    )
    assert "is not a model folder" in _refused(
        capsys, "accept", "--model-dir", str(tmp_path), "--prompt", "x"
    )
    assert "--exits: exit layers must satisfy 1 <= E < L = 4, got [4]" in _refused(
        capsys, *base, "--prompt", "x", "--exits", "4"
    )
    assert "--exits" in _refused(capsys, *base, "--prompt", "x", "--exits", "0")
    long_prompt = "x " * 600
    assert "exceed the model's context of 512" in _refused(
        capsys, *base, "--prompt", long_prompt, "--tokens", "8"
    )
    assert "--heads: these heads were trained for stdlib-lm" in _refused(
        capsys, *base, "--prompt", "x", "--heads", str(SHIPPED)
    )
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n{"text": 3}\n', encoding="utf-8")
    assert "--prompt-file p.jsonl:2" in _refused(capsys, *base, "--prompt-file", str(bad))
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    assert "chat template" in _refused(capsys, *base, "--prompt-file", str(bad))
    bad.write_bytes(b"\xff\xfe not text")
    bad = bad.rename(tmp_path / "p.txt")
    assert "not UTF-8" in _refused(capsys, *base, "--prompt-file", str(bad))
    # a model without a tokenizer, given --prompt
    from ppsd_real.arch import zoo

    bare = zoo.save_tiny("llama", tmp_path / "bare")
    assert "--prompt: needs a tokenizer" in _refused(
        capsys, "accept", "--model-dir", str(bare), "--prompt", "x"
    )
    assert out.read_text(encoding="utf-8") == "precious\n"
