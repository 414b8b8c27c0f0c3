"""featureaudit.variant.metrics against direct computations written here, on a tiny random Llama.

References:
  perplexity          exp of F.cross_entropy over shifted logits, all sequences in one forward pass
  sliding_perplexity  the transformers "perplexity of fixed-length models" recipe: windows of
                      `window` tokens every `stride`, labels -100 for all but the last trg_len
                      tokens, the model's own `labels=` loss weighted by the number of tokens it scored
  compare_to_fp       F.kl_div(log_q, log_p, log_target=True, reduction="sum") / n_positions, i.e.
                      KL(P_fp || P_variant), and a direct argmax comparison
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from featureaudit.variant.metrics import compare_to_fp, perplexity, sliding_perplexity
from tiny_models import VOCAB_SIZE, build_tiny_model

RTOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: threads only add overhead (and contend with anything else running)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    model_dir = build_tiny_model("llama", tmp_path_factory.mktemp("tiny-metrics") / "model", seed=0)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def variant(model):
    """The same model with noise on every weight matrix: close to it, but not identical."""
    v = copy.deepcopy(model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in v.parameters():
            if p.ndim == 2:
                p.add_(0.3 * p.std() * torch.randn(p.shape, generator=g))
    return v.eval()


@pytest.fixture(scope="module")
def far(model):
    """A heavily perturbed copy: far enough that KL(P||Q) and KL(Q||P) clearly differ."""
    v = copy.deepcopy(model)
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for p in v.parameters():
            if p.ndim == 2:
                p.add_(2.0 * p.std() * torch.randn(p.shape, generator=g))
        v.lm_head.weight.mul_(3.0)  # sharper next-token distributions
    return v.eval()


@pytest.fixture(scope="module")
def ids():
    """5 sequences of 24 tokens, BOS first (5 with batch_size 2 leaves a ragged last batch)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randint(3, VOCAB_SIZE, (5, 24), generator=g)
    x[:, 0] = 1
    return x


@pytest.fixture(scope="module")
def stream():
    g = torch.Generator().manual_seed(5)
    return torch.randint(3, VOCAB_SIZE, (73,), generator=g)


@torch.no_grad()
def direct_perplexity(model, ids: torch.Tensor) -> float:
    logits = model(input_ids=ids).logits.double()
    shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    shift_labels = ids[:, 1:].reshape(-1)
    return math.exp(F.cross_entropy(shift_logits, shift_labels, reduction="mean").item())


@torch.no_grad()
def recipe_sliding_perplexity(model, stream: torch.Tensor, max_length: int, stride: int) -> float:
    """https://huggingface.co/docs/transformers/perplexity, weighted by the tokens actually scored."""
    encodings = stream.unsqueeze(0)
    seq_len = encodings.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = encodings[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        scored = int((target_ids[:, 1:] != -100).sum())
        if scored:  # a 1-token last window scores nothing (its loss would be NaN)
            loss = model(input_ids, labels=target_ids).loss  # mean over labels[:, 1:] != -100
            nll_sum += loss.item() * scored
            n_tokens += scored
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


# ------------------------------------------------------------------------------------ perplexity


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_perplexity_is_exp_cross_entropy(model, ids, batch_size):
    ref = direct_perplexity(model, ids)
    assert perplexity(model, ids, batch_size=batch_size) == pytest.approx(ref, rel=RTOL)
    # A random-weight model over a 512-token vocabulary: far from 1 and finite.
    assert 1.5 < ref < 1e6


def test_perplexity_sees_the_labels(model, ids):
    """Changing the tokens to predict changes the perplexity (the test can fail)."""
    other = ids.clone()
    other[:, 1:] = (other[:, 1:] + 1 - 3) % (VOCAB_SIZE - 3) + 3
    assert perplexity(model, other) != pytest.approx(perplexity(model, ids), rel=1e-3)
    assert perplexity(model, other) == pytest.approx(direct_perplexity(model, other), rel=RTOL)


# ---------------------------------------------------------------------------- sliding perplexity


@pytest.mark.parametrize("window,stride", [(32, 12), (20, 19), (10, 7)])
def test_sliding_perplexity_matches_transformers_recipe(model, stream, window, stride):
    ref = recipe_sliding_perplexity(model, stream, window, stride)
    assert sliding_perplexity(model, stream, window, stride) == pytest.approx(ref, rel=RTOL)


def test_sliding_perplexity_overlap_matters(model, stream):
    """Context from the overlap changes the number: stride < window is not non-overlapping windows."""
    overlapping = sliding_perplexity(model, stream, 32, 8)
    disjoint = sliding_perplexity(model, stream, 32, 32)
    assert overlapping != pytest.approx(disjoint, rel=1e-4)


@pytest.mark.parametrize("window", [16, 24])  # 73 = 3 * 24 + 1: a 1-token last window
def test_sliding_perplexity_stride_equals_window_is_per_window(model, stream, window):
    """stride == window: disjoint windows, each scored on its own (first token of each unscored)."""
    n = len(stream)
    windows = [stream[b : b + window] for b in range(0, n, window)]
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            if len(w) < 2:
                continue
            logits = model(input_ids=w[None]).logits.double()[0]
            nll += F.cross_entropy(logits[:-1], w[1:], reduction="sum").item()
            count += len(w) - 1
    ref = math.exp(nll / count)
    assert sliding_perplexity(model, stream, window, window) == pytest.approx(ref, rel=RTOL)
    assert sliding_perplexity(model, stream, window, window) == pytest.approx(
        recipe_sliding_perplexity(model, stream, window, window), rel=RTOL
    )


def test_sliding_perplexity_exact_multiple_equals_batch_perplexity(model, stream):
    """A stream of exactly k windows, stride == window: the same as k independent sequences."""
    s = stream[:72]
    ref = direct_perplexity(model, s.view(3, 24))
    assert sliding_perplexity(model, s, 24, 24) == pytest.approx(ref, rel=RTOL)


# ---------------------------------------------------------------------------------- compare_to_fp


@torch.no_grad()
def direct_comparison(fp, var, ids):
    lp = F.log_softmax(fp(input_ids=ids).logits.double()[:, :-1], -1)
    lq = F.log_softmax(var(input_ids=ids).logits.double()[:, :-1], -1)
    n_positions = lp.shape[0] * lp.shape[1]
    kl = F.kl_div(lq.reshape(-1, lq.shape[-1]), lp.reshape(-1, lp.shape[-1]), log_target=True,
                  reduction="sum").item() / n_positions
    agree = (lp.argmax(-1) == lq.argmax(-1)).double().mean().item()
    return kl, agree, n_positions


@pytest.mark.parametrize("batch_size", [2, 8])
def test_compare_to_fp_matches_direct(model, variant, ids, batch_size):
    out = compare_to_fp(model, variant, ids, batch_size=batch_size)
    kl, agree, n = direct_comparison(model, variant, ids)
    assert out["n_tokens"] == n == ids.shape[0] * (ids.shape[1] - 1)
    assert out["kl_to_fp"] == pytest.approx(kl, rel=1e-4)
    assert out["top1_agreement"] == pytest.approx(agree, abs=1e-12)
    assert 0.0 < out["top1_agreement"] < 1.0  # the variant is different but not unrelated
    assert out["kl_to_fp"] > 1e-3
    assert out["perplexity"] == pytest.approx(direct_perplexity(variant, ids), rel=RTOL)
    assert out["fp_perplexity"] == pytest.approx(direct_perplexity(model, ids), rel=RTOL)
    assert out["perplexity"] == pytest.approx(perplexity(variant, ids), rel=RTOL)


def test_compare_to_fp_kl_direction(model, far, ids):
    """KL(P_fp || P_var), not KL(P_var || P_fp): the two differ for these models."""
    variant = far
    out = compare_to_fp(model, variant, ids)
    with torch.no_grad():
        lp = F.log_softmax(model(input_ids=ids).logits.double()[:, :-1], -1).flatten(0, 1)
        lq = F.log_softmax(variant(input_ids=ids).logits.double()[:, :-1], -1).flatten(0, 1)
    forward = F.kl_div(lq, lp, log_target=True, reduction="sum").item() / lp.shape[0]
    reverse = F.kl_div(lp, lq, log_target=True, reduction="sum").item() / lp.shape[0]
    assert abs(forward - reverse) > 0.1 * max(forward, reverse)
    assert out["kl_to_fp"] == pytest.approx(forward, rel=1e-4)
    # Swapping the arguments gives the other direction.
    assert compare_to_fp(variant, model, ids)["kl_to_fp"] == pytest.approx(reverse, rel=1e-4)


def test_compare_to_fp_identical_models(model, ids):
    same = copy.deepcopy(model)
    out = compare_to_fp(model, same, ids, batch_size=3)
    assert out["kl_to_fp"] == pytest.approx(0.0, abs=1e-6)
    assert out["top1_agreement"] == 1.0
    assert out["perplexity"] == pytest.approx(out["fp_perplexity"], rel=1e-6)
    assert out["perplexity"] == pytest.approx(direct_perplexity(model, ids), rel=RTOL)


# ------------------------------------------------------------- FP logits from stored hidden states


@pytest.mark.parametrize("arch", ["llama", "neox", "gemma2"])
def test_output_head_rebuilds_the_models_own_logits(arch, tmp_path):
    """fp_heldout.py's premise, on each architecture family (Gemma-2 with its final soft-cap): the
    logits are the output head applied to the last hidden state; and the metrics computed from
    stored hidden states equal those of two plain forwards."""
    from transformers import AutoModelForCausalLM

    from featureaudit.variant.fp_heldout import OutputHead, check_head, final_hidden
    from featureaudit.variant.metrics import compare_with_fp_hidden

    m = AutoModelForCausalLM.from_pretrained(build_tiny_model(arch, tmp_path / arch, seed=1), dtype=torch.float32).eval()
    if arch == "gemma2":
        assert m.config.final_logit_softcapping  # the cap is exercised
    ids = torch.randint(0, VOCAB_SIZE, (4, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = m(input_ids=ids).logits.float()
    got = OutputHead.of(m).logits(final_hidden(m, ids))
    d = m.get_output_embeddings().in_features
    # the same float32 dot products, possibly summed in another order: ~sqrt(d) eps of the scale
    torch.testing.assert_close(got, want, rtol=0, atol=8 * d**0.5 * torch.finfo(torch.float32).eps * want.abs().max().item())
    check_head(m, ids)
    noisy = copy.deepcopy(m)
    with torch.no_grad():
        for p in noisy.parameters():
            if p.ndim == 2:
                p.add_(0.2 * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
    out = compare_with_fp_hidden(OutputHead.of(m), final_hidden(m, ids), noisy, ids, batch_size=3)
    with torch.no_grad():
        lp, lq = F.log_softmax(want[:, :-1], -1), F.log_softmax(noisy(input_ids=ids).logits.float()[:, :-1], -1)
    n = ids[:, 1:].numel()
    assert out["kl_to_fp"] == pytest.approx(F.kl_div(lq, lp, log_target=True, reduction="sum").item() / n, rel=1e-4)
    assert out["perplexity"] == pytest.approx(math.exp(-lq.gather(-1, ids[:, 1:, None]).sum().item() / n), rel=1e-5)
    assert len(out["per_sequence"]["nll"]) == 4


def test_check_head_refuses_logits_that_are_not_the_head_of_the_hidden_state(model):
    """A model whose forward post-processes the logits cannot reuse stored hidden states."""
    from featureaudit.errors import AuditError
    from featureaudit.variant.fp_heldout import check_head

    odd = copy.deepcopy(model)
    original = odd.forward

    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        out.logits = out.logits * 0.5
        return out

    odd.forward = forward
    with pytest.raises(AuditError, match="not the output head"):
        check_head(odd, torch.randint(0, VOCAB_SIZE, (2, 8), generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("arch", ["llama", "neox"])
def test_fp_summary_gives_the_metrics_of_the_full_fp_distribution(arch, tmp_path):
    """With a linear head shared by FP and variant, the stored summary (negative entropy,
    expected output embedding, argmax, next-token log-probability) gives the same perplexities,
    KL and top-1 agreement as rebuilding the FP logits, to float32 rounding of sums of |z|."""
    from transformers import AutoModelForCausalLM

    from featureaudit.variant.fp_heldout import OutputHead, final_hidden, fp_summary
    from featureaudit.variant.metrics import compare_with_fp_hidden, compare_with_fp_summary

    m = AutoModelForCausalLM.from_pretrained(build_tiny_model(arch, tmp_path / arch, seed=2), dtype=torch.float32).eval()
    head = OutputHead.of(m)
    assert head.linear
    ids = torch.randint(0, VOCAB_SIZE, (5, 16), generator=torch.Generator().manual_seed(4))
    noisy = copy.deepcopy(m)
    with torch.no_grad():
        for name, p in noisy.named_parameters():
            if p.ndim == 2 and p is not noisy.get_output_embeddings().weight and "embed" not in name:
                p.add_(0.2 * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(6)))
    assert head.same_as(OutputHead.of(noisy))
    hidden = final_hidden(m, ids)
    summary = fp_summary(head, hidden, ids)
    for variant in (noisy, None):
        want = compare_with_fp_hidden(head, hidden, variant, ids, batch_size=2)
        got = compare_with_fp_summary(summary, variant, ids, batch_size=2)
        for key in ("perplexity", "fp_perplexity", "top1_agreement"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key
        # KL is a difference of two sums of size max|z|: float32 rounding, not a relative error
        zmax = head.logits(hidden).abs().max().item()
        assert got["kl_to_fp"] == pytest.approx(want["kl_to_fp"], abs=64 * torch.finfo(torch.float32).eps * zmax)
    assert got["kl_to_fp"] == 0.0 and got["top1_agreement"] == 1.0


@pytest.mark.parametrize("rows", [1, 3, 8, 64])
def test_logsumexp_argmax_is_torchs(rows):
    """The chunked pass gives torch.logsumexp and torch.argmax: ties (first index), infinite and
    NaN logits, a row count that is not a multiple of the chunk. Tolerance: the sum of V
    exponentials in another grouping, V float32 roundings at most, plus the final addition's."""
    from featureaudit.variant.metrics import logsumexp_argmax

    g = torch.Generator().manual_seed(3)
    z = 4 * torch.randn(3, 7, 1000, generator=g)
    z[0, 0, 7] = float("inf")
    z[0, 1, 3] = float("nan")
    z[0, 2] = float("-inf")
    z[0, 3] = 2.0  # all tied: index 0
    z[1, 0, [5, 9]] = float("inf")
    z[2] = torch.randint(0, 3, (7, 1000), generator=g).float()  # ties at the maximum
    got, top = logsumexp_argmax(z, rows=rows)
    want = torch.logsumexp(z, -1)
    assert torch.equal(top, z.argmax(-1))
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
    finite = want.isfinite()
    assert torch.equal(got[~finite & ~want.isnan()], want[~finite & ~want.isnan()])
    eps = torch.finfo(torch.float32).eps
    tol = z.shape[-1] * eps + 2 * eps * want[finite].abs()
    assert ((got[finite] - want[finite]).abs() <= tol).all()
