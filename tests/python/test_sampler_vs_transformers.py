"""bn_sampler_probs against Hugging Face transformers' logits processors and
llama.cpp's own samplers (llama-cpp-python's low-level API, at the end).

Each filter alone, then whole chains, on random logits. transformers is an
implementation we did not write; where its semantics and llama.cpp's (which
libbitnet follows) coincide, the distributions must agree:

* TemperatureLogitsWarper, TopKLogitsWarper, RepetitionPenaltyLogitsProcessor:
  identical definitions.
* TopPLogitsWarper: HF removes tokens whose ascending cumulative probability
  is <= 1 - p; llama.cpp keeps the shortest descending prefix whose mass is
  >= p. The same set, except when a cumulative sum lands exactly on the
  threshold (float rounding), so the single-filter tests pick p between two
  cumulative sums.
* TypicalLogitsWarper: HF keeps up to the first token whose cumulative mass is
  >= mass, llama.cpp up to the first whose mass is > mass: the same except at
  equality (avoided the same way).
* MinPLogitsWarper: HF keeps p >= min_p * p_max on the probabilities it is
  given; llama.cpp compares logits, logit >= max + log(min_p): the same set at
  one temperature.
* Order: llama.cpp's chain is penalties -> top-k -> typical -> top-p -> min-p
  -> temperature. HF's generate() puts temperature first (temperature, top-k,
  top-p, min-p, typical), so its top-p / typical / min-p see tempered
  probabilities. A chain of HF processors built in llama.cpp's order matches
  exactly; HF's own order differs when temperature != 1 (checked below), and
  for min-p alone it is equivalent to llama.cpp's with min_p ** temperature.
* Not in transformers: frequency / presence penalties and mirostat; the
  penalties are checked against a NumPy reference here, mirostat in
  tests/c/test_sampler.c.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lp = pytest.importorskip("transformers.generation.logits_process")
core = pytest.importorskip("bitnet_py._core")

N_VOCABS = [1000, 32000]
SEEDS = [0, 1, 2]


def plain(n_vocab, **kw):
    """A sampler with every filter off (temperature 1) except those in kw."""
    args = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)
    args.update(kw)
    return core.Sampler(n_vocab, **args)


def random_logits(n, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * scale).astype(np.float32)


def hf_probs(processors, logits, input_ids=()):
    scores = torch.from_numpy(logits.copy()).unsqueeze(0)
    ids = torch.tensor([list(input_ids)], dtype=torch.long)
    for proc in processors:
        scores = proc(ids, scores)
    return torch.softmax(scores, dim=-1)[0].numpy()


def assert_same_distribution(got, want):
    got_kept = got > 0
    want_kept = want > 0
    assert np.array_equal(got_kept, want_kept), (
        f"kept sets differ: {int(got_kept.sum())} vs {int(want_kept.sum())} tokens; "
        f"only ours {np.flatnonzero(got_kept & ~want_kept)[:10]}, "
        f"only transformers' {np.flatnonzero(want_kept & ~got_kept)[:10]}"
    )
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-7)


def between(cums, target):
    """A threshold near `target` halfway between two consecutive values of the
    increasing sequence `cums`, so that rounding cannot move the boundary."""
    i = int(np.searchsorted(cums, target))
    i = min(max(i, 1), len(cums) - 1)
    return float((cums[i - 1] + cums[i]) / 2)


def softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("temp", [0.3, 0.8, 1.0, 1.7])
def test_temperature(n, seed, temp):
    logits = random_logits(n, seed)
    got = plain(n, temperature=temp).probs(logits)
    want = hf_probs([lp.TemperatureLogitsWarper(temp)], logits)
    assert_same_distribution(got, want)


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 5, 40, 500])
def test_top_k(n, seed, k):
    logits = random_logits(n, seed)
    got = plain(n, top_k=k).probs(logits)
    want = hf_probs([lp.TopKLogitsWarper(k)], logits)
    assert_same_distribution(got, want)
    assert int((got > 0).sum()) == k


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.1, 0.5, 0.9, 0.95])
def test_top_p(n, seed, target):
    logits = random_logits(n, seed)
    cums = np.cumsum(np.sort(softmax64(logits))[::-1])
    p = between(cums, target)
    got = plain(n, top_p=p).probs(logits)
    want = hf_probs([lp.TopPLogitsWarper(p)], logits)
    assert_same_distribution(got, want)


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.01, 0.05, 0.2, 0.6])
def test_min_p(n, seed, target):
    logits = random_logits(n, seed)
    ratios = np.sort(softmax64(logits) / softmax64(logits).max())
    min_p = between(ratios, target)
    got = plain(n, min_p=min_p).probs(logits)
    want = hf_probs([lp.MinPLogitsWarper(min_p)], logits)
    assert_same_distribution(got, want)


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.2, 0.5, 0.9])
def test_typical(n, seed, target):
    logits = random_logits(n, seed)
    p = softmax64(logits)
    ent = -(p * np.log(p)).sum()
    order = np.argsort(np.abs(-np.log(p) - ent), kind="stable")
    mass = between(np.cumsum(p[order]), target)
    got = plain(n, typical_p=mass).probs(logits)
    want = hf_probs([lp.TypicalLogitsWarper(mass)], logits)
    assert_same_distribution(got, want)


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("penalty", [1.1, 1.5, 3.0])
def test_repetition_penalty(n, seed, penalty):
    logits = random_logits(n, seed)
    rng = np.random.default_rng(seed + 100)
    history = rng.integers(0, n, size=50).tolist() + [int(np.argmax(logits))]
    s = plain(n, repeat_penalty=penalty, penalty_last_n=-1)
    for t in history:
        s.accept(t)
    got = s.probs(logits)
    want = hf_probs([lp.RepetitionPenaltyLogitsProcessor(penalty)], logits, history)
    assert_same_distribution(got, want)


def test_penalty_window():
    """Only the last penalty_last_n accepted tokens count (HF sees what it is
    given: the same window)."""
    n = 1000
    logits = random_logits(n, 7)
    history = list(range(100, 200))
    s = plain(n, repeat_penalty=1.3, penalty_last_n=16)
    for t in history:
        s.accept(t)
    got = s.probs(logits)
    want = hf_probs([lp.RepetitionPenaltyLogitsProcessor(1.3)], logits, history[-16:])
    assert_same_distribution(got, want)


@pytest.mark.parametrize("seed", SEEDS)
def test_frequency_presence_penalties(seed):
    """llama.cpp's: logit -= count * frequency + (count > 0) * presence, after
    the repeat penalty. A NumPy reference (transformers has no such
    processor)."""
    n = 1000
    logits = random_logits(n, seed)
    rng = np.random.default_rng(seed)
    history = rng.integers(0, 30, size=64).tolist()
    s = plain(n, repeat_penalty=1.2, frequency_penalty=0.3, presence_penalty=0.7,
              penalty_last_n=64)
    for t in history:
        s.accept(t)
    ref = logits.astype(np.float64)
    counts = np.bincount(history, minlength=n)
    for t in np.flatnonzero(counts):
        ref[t] = ref[t] * 1.2 if ref[t] <= 0 else ref[t] / 1.2
        ref[t] -= counts[t] * 0.3 + 0.7
    np.testing.assert_allclose(s.probs(logits), softmax64(ref), rtol=1e-4, atol=1e-8)


def llama_order(k, typical, top_p, min_p, temp, penalty):
    procs = []
    if penalty != 1.0:
        procs.append(lp.RepetitionPenaltyLogitsProcessor(penalty))
    if k > 0:
        procs.append(lp.TopKLogitsWarper(k))
    if typical < 1.0:
        procs.append(lp.TypicalLogitsWarper(typical))
    if top_p < 1.0:
        procs.append(lp.TopPLogitsWarper(top_p))
    if min_p > 0.0:
        procs.append(lp.MinPLogitsWarper(min_p))
    procs.append(lp.TemperatureLogitsWarper(temp))
    return procs


CHAINS = [
    # top_k, typical_p, top_p, min_p, temperature, repeat_penalty
    (40, 1.0, 0.95, 0.05, 0.8, 1.0),  # the library's defaults
    (0, 1.0, 0.9, 0.0, 0.7, 1.0),
    (100, 1.0, 0.8, 0.02, 1.3, 1.1),
    (500, 0.9, 0.85, 0.01, 0.6, 1.2),
    (0, 0.8, 1.0, 0.1, 1.0, 1.0),
]


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("chain", CHAINS)
def test_chain_in_llama_order(n, seed, chain):
    k, typical, top_p, min_p, temp, penalty = chain
    logits = random_logits(n, seed, scale=2.0)
    history = np.random.default_rng(seed).integers(0, n, size=32).tolist()
    s = core.Sampler(n, temperature=temp, top_k=k, top_p=top_p, min_p=min_p,
                     typical_p=typical, repeat_penalty=penalty, penalty_last_n=64)
    for t in history:
        s.accept(t)
    got = s.probs(logits)
    want = hf_probs(llama_order(k, typical, top_p, min_p, temp, penalty), logits, history)
    assert_same_distribution(got, want)


def test_hf_default_order_differs():
    """HF's generate() applies temperature before top-p; llama.cpp after.
    With temperature != 1 the kept sets differ; with temperature 1 they do
    not."""
    n = 32000
    logits = random_logits(n, 3, scale=2.0)
    hf_order = [lp.TemperatureLogitsWarper(0.5), lp.TopPLogitsWarper(0.9)]
    ours = plain(n, temperature=0.5, top_p=0.9).probs(logits)
    theirs = hf_probs(hf_order, logits)
    assert (ours > 0).sum() > (theirs > 0).sum()  # sharper probs: fewer tokens reach 0.9
    same = hf_probs([lp.TopPLogitsWarper(0.9), lp.TemperatureLogitsWarper(0.5)], logits)
    assert_same_distribution(ours, same)


@pytest.mark.parametrize("temp", [0.5, 0.8, 1.5])
def test_min_p_after_temperature_equivalence(temp):
    """HF's min-p after temperature T equals llama.cpp's min-p with
    min_p ** T (p_T >= m p_max,T  <=>  l >= l_max + T log m)."""
    n = 32000
    logits = random_logits(n, 11, scale=2.0)
    ratios = np.sort(softmax64(logits / temp) / softmax64(logits / temp).max())
    m = between(ratios, 0.1)
    theirs = hf_probs([lp.TemperatureLogitsWarper(temp), lp.MinPLogitsWarper(m)], logits)
    ours = plain(n, temperature=temp, min_p=m ** temp).probs(logits)
    assert_same_distribution(ours, theirs)


def test_greedy_is_one_hot():
    n = 32000
    logits = random_logits(n, 5)
    s = core.Sampler(n, temperature=0.0)
    p = s.probs(logits)
    assert p.dtype == np.float32 and p.shape == (n,)
    assert p[np.argmax(logits)] == 1.0 and p.sum() == 1.0
    assert s.sample(logits) == int(np.argmax(logits))


def test_sampling_follows_probs_and_seed():
    n = 50
    logits = random_logits(n, 9, scale=1.0)
    a = core.Sampler(n, temperature=0.9, top_k=20, top_p=1.0, min_p=0.0, seed=123)
    b = core.Sampler(n, temperature=0.9, top_k=20, top_p=1.0, min_p=0.0, seed=123)
    probs = a.probs(logits)
    draws_a = [a.sample(logits) for _ in range(20000)]
    draws_b = [b.sample(logits) for _ in range(20000)]
    assert draws_a == draws_b
    freq = np.bincount(draws_a, minlength=n) / len(draws_a)
    assert np.all(freq[probs == 0] == 0)
    np.testing.assert_allclose(freq, probs, atol=0.015)
    a.reset(123)
    assert [a.sample(logits) for _ in range(100)] == draws_b[:100]


def test_errors():
    with pytest.raises(ValueError):
        core.Sampler(10, top_p=1.5)
    with pytest.raises(ValueError):
        core.Sampler(10, temperature=-1.0)
    with pytest.raises(ValueError):
        core.Sampler(0)
    s = core.Sampler(10)
    with pytest.raises(ValueError):
        s.sample(np.zeros(9, dtype=np.float32))
    with pytest.raises(ValueError):
        s.probs(np.full(10, np.nan, dtype=np.float32))
    with pytest.raises(ValueError):
        s.accept(10)
    with pytest.raises(TypeError):
        s.accept("a")


# ---------------------------------------------------------------------------
# llama.cpp's own samplers (through llama-cpp-python's low-level API): the
# semantics libbitnet follows, so they must agree everywhere, mirostat
# included (its first step: later steps depend on the draws, and the RNGs
# differ).
# ---------------------------------------------------------------------------


def _llama():
    return pytest.importorskip("llama_cpp")


def llama_chain_probs(samplers, logits, history=()):
    """Apply llama.cpp samplers to the logits and return the distribution of
    what is left (softmax of the remaining logits), and the selected index."""
    import ctypes

    L = _llama()
    n = len(logits)
    arr = (L.llama_token_data * n)()
    for i in range(n):
        arr[i].id = i
        arr[i].logit = float(logits[i])
        arr[i].p = 0.0
    cur = L.llama_token_data_array(
        data=ctypes.cast(arr, ctypes.POINTER(L.llama_token_data)),
        size=n, selected=-1, sorted=False,
    )
    try:
        for s in samplers:
            for t in history:
                L.llama_sampler_accept(s, t)
        for s in samplers:
            L.llama_sampler_apply(s, ctypes.byref(cur))
        ids = np.array([cur.data[i].id for i in range(cur.size)], dtype=np.int64)
        lg = np.array([cur.data[i].logit for i in range(cur.size)], dtype=np.float64)
    finally:
        for s in samplers:
            L.llama_sampler_free(s)
    out = np.zeros(n)
    e = np.exp(lg - lg.max())
    out[ids] = e / e.sum()
    return out


def _has_llama_penalties_with_n_vocab(L):
    import inspect

    try:
        return "n_vocab" in str(inspect.signature(L.llama_sampler_init_penalties))
    except (TypeError, ValueError):
        return False


def llama_penalties(last_n, repeat, freq, present, n_vocab):
    L = _llama()
    if _has_llama_penalties_with_n_vocab(L):
        return L.llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present)
    return L.llama_sampler_init_penalties(last_n, repeat, freq, present)


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
def test_vs_llama_cpp_single_filters(n, seed):
    L = _llama()
    logits = random_logits(n, seed)
    p = softmax64(logits)
    cums = np.cumsum(np.sort(p)[::-1])
    top_p = between(cums, 0.9)
    ratios = np.sort(p / p.max())
    min_p = between(ratios, 0.05)
    ent = -(p * np.log(p)).sum()
    order = np.argsort(np.abs(-np.log(p) - ent), kind="stable")
    typical = between(np.cumsum(p[order]), 0.6)
    cases = [
        (dict(top_k=40), [L.llama_sampler_init_top_k(40)]),
        (dict(top_p=top_p), [L.llama_sampler_init_top_p(top_p, 1)]),
        (dict(min_p=min_p), [L.llama_sampler_init_min_p(min_p, 1)]),
        (dict(typical_p=typical), [L.llama_sampler_init_typical(typical, 1)]),
        (dict(temperature=0.7), [L.llama_sampler_init_temp(0.7)]),
    ]
    for kw, samplers in cases:
        got = plain(n, **kw).probs(logits)
        want = llama_chain_probs(samplers, logits)
        assert_same_distribution(got, want.astype(np.float32))


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("chain", CHAINS)
def test_vs_llama_cpp_default_chain(n, seed, chain):
    """penalties -> top-k -> typical -> top-p -> min-p -> temperature, as
    llama.cpp's common sampler builds it."""
    L = _llama()
    k, typical, top_p, min_p, temp, penalty = chain
    logits = random_logits(n, seed, scale=2.0)
    history = np.random.default_rng(seed).integers(0, n, size=100).tolist()
    s = core.Sampler(n, temperature=temp, top_k=k, top_p=top_p, min_p=min_p, typical_p=typical,
                     repeat_penalty=penalty, frequency_penalty=0.1, presence_penalty=0.2,
                     penalty_last_n=64)
    for t in history:
        s.accept(t)
    got = s.probs(logits)
    samplers = [
        llama_penalties(64, penalty, 0.1, 0.2, n),
        L.llama_sampler_init_top_k(k),
        L.llama_sampler_init_typical(typical, 1),
        L.llama_sampler_init_top_p(top_p, 1),
        L.llama_sampler_init_min_p(min_p, 1),
        L.llama_sampler_init_temp(temp),
    ]
    want = llama_chain_probs(samplers, logits, history)
    assert_same_distribution(got, want.astype(np.float32))


@pytest.mark.parametrize("n", N_VOCABS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("version,tau", [(1, 3.0), (1, 5.0), (2, 3.0), (2, 6.0)])
def test_vs_llama_cpp_mirostat_first_step(n, seed, version, tau):
    L = _llama()
    logits = random_logits(n, seed, scale=3.0)
    s = core.Sampler(n, temperature=0.9, mirostat=version, mirostat_tau=tau, mirostat_eta=0.1)
    got = s.probs(logits)
    if version == 1:
        miro = L.llama_sampler_init_mirostat(n, 1, tau, 0.1, 100)
    else:
        miro = L.llama_sampler_init_mirostat_v2(1, tau, 0.1)
    want = llama_chain_probs([L.llama_sampler_init_temp(0.9), miro], logits)
    kept_got, kept_want = int((got > 0).sum()), int((want > 0).sum())
    # k (v1) comes from float powf; one token either way at a rounding edge
    assert abs(kept_got - kept_want) <= 1, (kept_got, kept_want)
    if kept_got == kept_want:
        assert_same_distribution(got, want.astype(np.float32))


def test_sampler_object():
    s = core.Sampler(100)
    assert (s.n_vocab, s.top_k, s.penalty_last_n, s.mirostat) == (100, 40, 64, 0)
    assert s.temperature == pytest.approx(0.8)
    assert s.seed == 0xDEADBEEF
    assert "Sampler(n_vocab=100" in repr(s)
    s.reset(7)
    assert s.seed == 7
    s.reset()
    assert s.seed == 7
    s = core.Sampler(100, seed=-1)  # taken modulo 2**64
    assert s.seed == 2**64 - 1
    with pytest.raises(AttributeError):
        s.top_k = 5
    # logits as a list, a float64 array, a non-contiguous view
    logits = np.linspace(-1, 1, 200)[::2]
    a = s.probs(logits)
    b = s.probs(np.ascontiguousarray(logits, dtype=np.float32))
    c = s.probs(list(logits))
    assert np.array_equal(a, b) and np.array_equal(a, c)
    uninit = core.Sampler.__new__(core.Sampler)
    with pytest.raises(ValueError):
        uninit.sample(b)
