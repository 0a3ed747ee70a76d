"""Property tests: bitnet_py's tokenizers against tiktoken and sentencepiece.

Random Unicode text (hypothesis: any code point but surrogates, plus
alphabets and word lists that stress the split pattern, contractions,
whitespace runs and special-token text). Each comparison runs at least
10,000 examples; the expected number of mismatches is 0.

- Llama-3: tiktoken built as the original BitNet gpu/tokenizer.py builds it
  (tokenizer.model ranks, the Llama-3 split pattern, 256 special tokens),
  in both special-token modes, plus HF tokenizers on tokenizer.json.
- LLaMA SentencePiece: sentencepiece with tokenizer.model.
- GPT-2 (GGUF vocabulary with a merge list): tiktoken over the same
  vocabulary with the GPT-2 split pattern.

BITNET_PROP_EXAMPLES lowers the count for quick local runs.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
tiktoken = pytest.importorskip("tiktoken")
spm = pytest.importorskip("sentencepiece")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bitnet_py._core as core  # noqa: E402

TESTDATA = Path(
    os.environ.get("BITNET_TESTDATA")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata"
).resolve()
TOK = TESTDATA / "tokenizers"
N = int(os.environ.get("BITNET_PROP_EXAMPLES", "10000"))

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    "<|eot_id|>",
] + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]

PROPS = settings(
    max_examples=N,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

if not (TOK / "llama3" / "tokenizer.model").is_file():
    pytest.skip(f"tokenizer data not found under {TOK}", allow_module_level=True)


@pytest.fixture(scope="module")
def llama3():
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(TOK / "llama3" / "tokenizer.model"))
    ref = tiktoken.Encoding(
        name="llama3",
        pat_str=LLAMA3_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIALS)},
    )
    ours = core.Tokenizer.load_tiktoken(TOK / "llama3" / "tokenizer.model")
    return ref, ours


@pytest.fixture(scope="module")
def llama_spm():
    model = str(TOK / "llama-spm" / "tokenizer.model")
    return spm.SentencePieceProcessor(model_file=model), core.Tokenizer.load_spm(model)


# Characters that matter to the split pattern and to SentencePiece: every
# whitespace kind, contraction letters (and U+017F, which (?i:'s) matches),
# letters / numbers of several categories (Lu Ll Lt Lm Lo, Nd Nl No), marks,
# emoji parts, controls, U+2581 (SentencePiece's space).
TRICKY = list(
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2003\u2028\u2029\u202f\u205f\u3000"
    "'sStTrReEvVmMlLdDk\u017f\u212aaZ09\u0663\u2167\u00bd\u2460\u01c5\u02b0\u4e2d\u3042"
    "\u00e9e\u0301\U0001f999\U0001f44d\U0001f3fd\u200d\ufe0f!.,-_<|>()[]{}#\"/\\\x00\x01\x7f"
    "\u2581\ufeff\ufffd\u0e01\u0e31\U00010400\U0001d7ce\U00031350"
)
WORDS = SPECIALS[:12] + [
    " ", "  ", "   ", "\n", "\r\n", "\n\n", " \n", "\t", "'s", "'LL", "'ve", "'Re", "'\u017f",
    "hello", " world", "THEY'RE", "123", "4567", " 89", "3.14", "1,000", "don't", " \u00a0",
    "\u4e2d\u6587", "\U0001f999", "\u0645\u0631\u062d\u0628\u0627", "<|", "|>", "<", "eot_id",
    "<|eot_id", "...", "!!!", " (", "x", "\u2581", "\u2581\u2581",
]

texts = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=st.sampled_from(TRICKY), max_size=80),
    st.lists(st.sampled_from(WORDS), max_size=24).map("".join),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=16).map("".join),
)


@PROPS
@given(text=texts)
def test_llama3_plain_matches_tiktoken(llama3, text):
    ref, ours = llama3
    want = ref.encode(text, allowed_special=set(), disallowed_special=())
    got = ours.encode(text, allowed_special=(), disallowed_special=())
    assert got == want
    assert ours.decode_bytes(got) == ref.decode_bytes(want)


@PROPS
@given(text=texts)
def test_llama3_special_matches_tiktoken(llama3, text):
    ref, ours = llama3
    want = ref.encode(text, allowed_special="all")
    got = ours.encode(text, allowed_special="all")
    assert got == want
    assert ours.decode(got) == ref.decode(want)
    # the default (all disallowed) raises exactly when tiktoken raises
    try:
        ref.encode(text)
        ref_raised = False
    except ValueError:
        ref_raised = True
    try:
        ours.encode(text)
        ours_raised = False
    except ValueError:
        ours_raised = True
    assert ours_raised == ref_raised


@PROPS
@given(text=texts)
def test_llama3_stream_equals_decode(llama3, text):
    _, ours = llama3
    ids = ours.encode(text, disallowed_special=())
    d = ours.stream_decoder()
    streamed = "".join(d.push(i) for i in ids) + d.flush()
    assert streamed == ours.decode(ids) == text


@settings(max_examples=min(N, 3000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(st.integers(min_value=0, max_value=128255), max_size=40))
def test_llama3_decode_random_ids(llama3, ids):
    ref, ours = llama3
    assert ours.decode_bytes(ids) == ref.decode_bytes(ids)
    assert ours.decode(ids) == ref.decode(ids)
    d = ours.stream_decoder()
    assert "".join(d.push(i) for i in ids) + d.flush() == ref.decode(ids)


@settings(max_examples=min(N, 2000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_llama3_lone_surrogates_like_tiktoken(llama3, text):
    ref, ours = llama3
    s = text[: len(text) // 2] + "\ud800" + text[len(text) // 2 :] + "\udfff"
    assert ours.encode(s, disallowed_special=()) == ref.encode(s, disallowed_special=())


@PROPS
@given(text=texts)
def test_spm_matches_sentencepiece(llama_spm, text):
    ref, ours = llama_spm
    want = ref.encode(text)
    got = ours.encode(text, disallowed_special=())
    assert got == want
    assert ours.decode(got, skip_special=True) == ref.decode(want)


@PROPS
@given(text=texts)
def test_spm_stream_equals_decode(llama_spm, text):
    _, ours = llama_spm
    ids = ours.encode(text, disallowed_special=())
    d = ours.stream_decoder(skip_special=True)
    assert "".join(d.push(i) for i in ids) + d.flush() == ours.decode(ids, skip_special=True)


@settings(max_examples=min(N, 3000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(st.integers(min_value=0, max_value=31999), max_size=40))
def test_spm_decode_random_ids(llama_spm, ids):
    ref, ours = llama_spm
    # sentencepiece maps each invalid byte of <0xNN> runs to U+FFFD while
    # Python's decoder replaces maximal invalid subparts: compare where the
    # byte pieces form valid UTF-8
    raw = ours.decode_bytes(ids, skip_special=True)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert ours.decode(ids, skip_special=True) == ref.decode(ids)


@pytest.fixture(scope="module")
def hf_llama3(tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_bytes(gzip.decompress((TOK / "llama3" / "tokenizer.json.gz").read_bytes()))
    return tokenizers.Tokenizer.from_file(str(path)), core.Tokenizer.load_hf_json(path)


@PROPS
@given(text=texts)
def test_hf_json_matches_hf_tokenizers(hf_llama3, llama3, text):
    ref, ours = hf_llama3
    # HF always splits added tokens out of text: that is allowed_special="all"
    want = ref.encode(text, add_special_tokens=False).ids
    got = ours.encode(text, allowed_special="all")
    assert got == want
    assert got == llama3[1].encode(text, allowed_special="all")


GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _byte_level_decoder():
    direct = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    cps = {b: b for b in direct}
    k = 0
    for b in range(256):
        if b not in cps:
            cps[b] = 256 + k
            k += 1
    return {chr(cp): b for b, cp in cps.items()}


@pytest.fixture(scope="module")
def gpt2():
    # tiktoken over the GGUF's own vocabulary (rank = id, as GPT-2's ranks
    # are) and the GPT-2 split pattern: the merge-list BPE of the GGUF and
    # tiktoken's rank BPE give the same ids for GPT-2
    path = TOK / "gpt2" / "ggml-vocab-gpt-2.gguf"
    r = core.GGUFReader(path)
    toks = r.get("tokenizer.ggml.tokens")
    types = r.get("tokenizer.ggml.token_type")
    r.close()
    dec = _byte_level_decoder()
    ranks = {bytes(dec[c] for c in s): i for i, (s, ty) in enumerate(zip(toks, types)) if ty == 1}
    specials = {s: i for i, (s, ty) in enumerate(zip(toks, types)) if ty != 1}
    ref = tiktoken.Encoding("gpt2-gguf", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens=specials)
    return ref, core.Tokenizer.from_gguf(path)


@PROPS
@given(text=texts)
def test_gpt2_gguf_matches_tiktoken(gpt2, text):
    ref, ours = gpt2
    want = ref.encode(text, allowed_special=set(), disallowed_special=())
    assert ours.encode(text, disallowed_special=()) == want
    assert ours.decode_bytes(want) == ref.decode_bytes(want)


def test_long_inputs_match(llama3, llama_spm):
    """Long texts and long runs (the heap merge, word splitting, whitespace
    runs) against both references."""
    import random

    rng = random.Random(1)
    pool = [" ", "\n", "\r\n", "\t", "  ", "a", "B", "1", "123", "!", "\u00e9", "\u4e2d",
            "\U0001f999", "'s", "\u3000", "\u00a0", "x" * 50, " " * 70, "9" * 40, "." * 60,
            "\n" * 30, "<|eot_id|>"]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 2000))) for _ in range(100)]
    texts += [" " * 100000, "a" * 100000, "\n" * 50000 + "x", " \n" * 30000, "1" * 99999,
              "\U0001f999" * 20000, "\u00e9" * 50000, "ab" * 50000]
    (ref, ours), (sp_ref, sp_ours) = llama3, llama_spm
    for s in texts:
        assert ours.encode(s, disallowed_special=()) == ref.encode_ordinary(s), s[:20]
        assert sp_ours.encode(s, disallowed_special=()) == sp_ref.encode(s), s[:20]
