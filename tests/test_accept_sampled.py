"""``ppsd accept`` at temperature > 0 on the shipped model: expected acceptance is 1 when the
draft distribution is the target, tends to the greedy argmax agreement as T → 0, the realised
outcomes of the exact rule agree with the expected ones within their sampling error, the
default flags write today's greedy record, and bad decoding flags are one line, exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ppsd_real import accept, runner
from ppsd_real.lm.heads import load_heads
from ppsd_real.model_loading import ModelSpec, model_fingerprint
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_sim.cli.main import main
from tests.arch_helpers import SHIPPED, one_thread  # noqa: F401

SPEC = ModelSpec(preset=None, path=str(SHIPPED))


@pytest.fixture(scope="module")
def shipped():
    m = runner.load(SPEC)
    heads = load_heads(SHIPPED, model_fingerprint(SPEC), m.driver.parts.lm_head)
    return m, heads


def test_expected_acceptance_is_one_when_q_is_p(shipped) -> None:
    """The full model judged against itself, through the same rows code: α = 1 exactly."""
    m, _ = shipped
    d = m.driver
    (pr,) = accept.stdlib_held_out(str(SHIPPED), 1, 24)
    spec = SamplingSpec(1.0, top_p=0.9, seed=3)
    cont = accept.sampled_continuation(d, pr.ids, 20, spec, 0)
    _, full = accept.exit_logits(d, pr.ids, cont, (d.n_layers - 1,), {})

    class Full(torch.nn.Module):  # a "head" at exit L-1 that is the whole model's output
        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            return full[None]

    rows = accept.sampled_rows(d, pr.ids, cont, (d.n_layers - 1,), {5: Full()}, spec, 0)
    bits, exp = rows[(d.n_layers - 1, "trained")]
    assert bits == [1] * 20 and all(abs(x - 1.0) < 1e-9 for x in exp)
    _, sexp = rows[(d.n_layers - 1, "shared")]
    assert min(sexp) < 1.0  # the real exit is not the full model


def test_greedy_limit_and_realised_agree_with_expected(shipped) -> None:
    """T → 0: the expected acceptance is the argmax agreement of the greedy record, position
    by position. T = 1: Σ realised − Σ expected over 480 judged drafts per row is within
    4 standard deviations sqrt(Σ e(1−e)) (each outcome is Bernoulli(e) given its prefix)."""
    m, heads = shipped
    prompts = accept.stdlib_held_out(str(SHIPPED), 12, 32)
    cold = SamplingSpec(1e-4)
    rec = accept.measure(
        m, prompts, 40, (1, 4), heads=heads, settings=(GREEDY, cold, SamplingSpec(1.0, seed=7))
    )
    dcold, dhot = (accept.decoding_of(s) for s in (cold, SamplingSpec(1.0)))
    for e in (1, 4):
        for head in ("shared", "trained"):
            g = rec.of(e, head).flat_trace()
            c = rec.of(e, head, decoding=dcold)
            exp = [x for row in c.expected for x in row]
            off = sum(abs(x - b) > 1e-3 for x, b in zip(exp, g, strict=True))
            assert off <= 2, (e, head, off)  # near-ties of the logits may flip a few
            hot = rec.of(e, head, decoding=dhot)
            ex = [x for row in hot.expected for x in row]
            z = (hot.accepted - sum(ex)) / math.sqrt(sum(x * (1 - x) for x in ex))
            assert abs(z) < 4, (e, head, z, hot.alpha, hot.expected_alpha)
            assert abs(hot.expected_alpha - c.expected_alpha) > 0.02  # temperature matters


def test_sampled_measurement_is_seeded(shipped) -> None:
    m, _ = shipped
    prompts = accept.stdlib_held_out(str(SHIPPED), 2, 16)
    a, b, c = (
        accept.measure(m, prompts, 12, (2,), settings=(SamplingSpec(0.8, seed=s),)).exits[0]
        for s in (1, 1, 2)
    )
    assert a == b and a.traces != c.traces


def test_default_flags_write_todays_greedy_record(tmp_path: Path, capsys) -> None:
    out = tmp_path / "a.json"
    base = ["accept", "--prompts", "2", "--prompt-tokens", "16", "--tokens", "8", "--exits", "2"]
    assert main([*base, "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].endswith("; greedy") and "E[α]" not in text
    rec = json.loads(out.read_text())
    assert rec["decoding"] == "greedy"
    assert set(rec["exits"][0]) == {
        "exit", "head", "alpha", "alpha_se", "judged", "accepted", "burstiness", "per_gamma",
        "traces",
    }  # fmt: skip
    curve = tmp_path / "c.json"
    args = [*base, "--no-progress", "--temperature", "0.7", "--top-p", "0.9"]
    assert main([*args, "--curve-out", str(curve)]) == 0
    assert "E[α]" in capsys.readouterr().out
    got = json.loads(curve.read_text())
    assert got["decoding"] == {"temperature": 0.7, "top_k": None, "top_p": 0.9}


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--temperature", "x"], "--temperature"),
        (["--temperature", "-0.5"], "--temperature"),
        (["--temperatures", "0,nan"], "--temperature"),
        (["--temperature", "1", "--top-p", "1.2"], "--top-p"),
        (["--temperature", "1", "--top-k", "0"], "--top-k"),
        (["--top-p", "0.9"], "--top-p"),  # greedy only: refused, not ignored
        (["--seed", "3"], "--seed"),
        (["--temperature", "1", "--seed", "-1"], "--seed"),
        (["--temperatures", "0,1", "--curve-out", "c.json"], "--curve-out"),
    ],
)
def test_bad_decoding_flags_are_one_line(args: list[str], flag: str, tmp_path, capsys) -> None:
    args = [a if a != "c.json" else str(tmp_path / a) for a in args]
    assert main(["accept", "--tokens", "4", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "Traceback" not in err
    assert not (tmp_path / "c.json").exists()


def test_the_card_shows_its_measured_sampling_section() -> None:
    """model_card.md is rendered from card.json (no hand-typed numbers), and the sampled
    section covers T ∈ {0, 0.7, 1} × top-p ∈ {1, 0.9} for every exit and both heads."""
    from ppsd_real.lm import card as card_mod

    card = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))
    text = (SHIPPED / "model_card.md").read_text(encoding="utf-8")
    assert card_mod.render_card(SHIPPED) == text
    ev = card["sampling_eval"]
    got = {(s["temperature"], s["top_p"]) for s in ev["settings"]}
    assert got == {(0.0, 1.0), (0.7, 1.0), (0.7, 0.9), (1.0, 1.0), (1.0, 0.9)}
    for s in ev["settings"]:
        assert [r["exit"] for r in s["exits"]] == list(range(1, 6))
        for r in s["exits"]:
            for head in ("shared", "trained"):
                v = r[head]
                assert 0 < v["expected"] <= 1 and 0 <= v["realised"] <= 1
                if s["temperature"] == 0:
                    assert v["expected"] == v["realised"]
    greedy = next(s for s in ev["settings"] if s["temperature"] == 0)
    for r, c in zip(greedy["exits"], card["exits"], strict=True):
        for head in ("shared", "trained"):  # the same prompts and code as the greedy table
            assert r[head]["realised"] == pytest.approx(c[head]["alpha_greedy"], abs=1e-4)


@pytest.mark.slow
def test_the_cards_sampling_section_is_reproduced() -> None:
    """~10 s: ``card_sampling.measure`` is seeded and each cell depends only on its own
    setting, exit and head, so rerunning T = 1 at exits 1 and 5 gives the card's numbers."""
    from ppsd_real.lm import card_sampling

    card = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))
    g = card["greedy_eval"]
    got = card_sampling.measure(
        SHIPPED, g["prompts"], g["prompt_len"], g["new_tokens"], 1, grid=((1.0, 1.0),), exits=(1, 5)
    )
    (mine,) = got["settings"]
    want = next(
        s for s in card["sampling_eval"]["settings"] if (s["temperature"], s["top_p"]) == (1.0, 1.0)
    )
    for ra in mine["exits"]:
        rb = want["exits"][ra["exit"] - 1]
        for head in ("shared", "trained"):
            for k in ("expected", "realised"):
                assert ra[head][k] == pytest.approx(rb[head][k], abs=2e-3), (ra["exit"], head, k)
