"""Command line.

``python -m bitnet_py generate [-m MODEL] [-t TOKENIZER] -p PROMPT``
    stream a continuation (without ``-m``: the model shipped with the package);
``python -m bitnet_py chat [-m MODEL] [-t TOKENIZER]``
    an interactive chat in the original's format (``--interactive --chat_format``);
``python -m bitnet_py info MODEL`` and ``python -m bitnet_py version``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence, TextIO

from . import BitNetError, _core


def _info(path: str, as_json: bool) -> int:
    with _core.Model(path) as model:
        info: dict[str, Any] = {
            "path": model.path,
            "config": model.config,
            "n_params": model.n_params,
            "weight_bytes": model.weight_bytes,
            "has_tokenizer": model.has_tokenizer,
        }
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model:         {info['path']}")
    for key, value in info["config"].items():
        print(f"  {key:<12} {value}")
    print(f"n_params:      {info['n_params']:,}")
    print(f"weight_bytes:  {info['weight_bytes']:,}")
    print(f"has_tokenizer: {info['has_tokenizer']}")
    return 0


def _version() -> int:
    print(f"bitnet_py {_core.__version__} (libbitnet {_core.version()})")
    print(f"kernels:  {_core.kernel_name()}")
    print(f"cpu:      {' '.join(_core.cpu_features())}")
    print(f"build:    {_core.build_info()}")
    return 0


def _add_gen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default=None,
                   help="GGUF file or checkpoint directory (default: the model shipped with bitnet_py)")
    p.add_argument("-t", "--tokenizer", default=None,
                   help="tokenizer.model / tokenizer.json (default: next to the model, or the model's own)")
    p.add_argument("-n", "--max-new-tokens", type=int, default=128, help="maximum new tokens (default 128)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--greedy", action="store_true", help="greedy decoding (same as --temperature 0)")
    p.add_argument("--n-ctx", type=int, default=0, help="context length (default: the model's, at most 4096)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    p.add_argument("--kv-type", choices=["f32", "f16"], default="f32",
                   help="KV cache: f32 (default) or f16 (half the memory, as llama.cpp's default)")


def _simple(args: argparse.Namespace) -> Any:
    from . import InferenceConfig, SimpleInference, create_tokenizer, load_model, set_num_threads

    set_num_threads(args.threads)
    kw = {"n_ctx": args.n_ctx, "kv_type": args.kv_type}
    model = load_model(args.model, **kw) if args.model else load_model(**kw)
    tok = create_tokenizer(args.tokenizer) if args.tokenizer else None
    greedy = args.greedy or args.temperature == 0
    cfg = InferenceConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                          top_k=args.top_k, seed=args.seed, do_sample=not greedy,
                          max_length=args.n_ctx or 4096)
    return SimpleInference(model, tok, cfg)


def _generate(args: argparse.Namespace, out: TextIO) -> int:
    si = _simple(args)
    prompts = list(args.text or []) + list(args.prompt or []) or ["Hello, my name is"]
    for prompt in prompts:
        stream = si.generate_stream(prompt)
        if args.json:
            text = "".join(stream)
            print(json.dumps({"prompt": prompt, "text": text, "stats": stream.get_stream_stats()}), file=out)
            continue
        if args.echo:
            out.write(prompt)
        for piece in stream:
            out.write(piece)
            out.flush()
        out.write("\n")
        if args.stats:
            st = stream.get_stream_stats()
            print(f"[generate] tokens: {st['tokens_generated']} - {st['elapsed']:.3f}s - "
                  f"{st['tokens_per_second']:.1f} tokens per second", file=sys.stderr)
    return 0


def _chat(args: argparse.Namespace, inp: TextIO, out: TextIO) -> int:
    """The original's interactive chat: each turn is encoded with ChatFormat
    (dialog so far + the assistant header) and the answer streamed."""
    from ._engine import CancelToken
    from .tokenizer import ChatFormat, Tokenizer

    si = _simple(args)
    eng = si.engine
    fmt = ChatFormat(Tokenizer(eng.require_tokenizer()))
    dialog: list[dict[str, str]] = []
    if args.system:
        dialog.append({"role": "system", "content": args.system})
    params = si._params({})
    while True:
        out.write("enter prompt: ")
        out.flush()
        line = inp.readline()
        if not line:
            out.write("\nexiting\n")
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() in ("/exit", "/quit"):
            out.write("exiting\n")
            return 0
        if text.strip() == "/reset":
            dialog = dialog[:1] if args.system else []
            continue
        dialog.append({"role": "user", "content": text})
        ids = fmt.encode_dialog_prompt(dialog, completion=True)
        while len(ids) >= eng.n_ctx - 1 and len(dialog) > 1:
            dialog = dialog[2:] if dialog[0]["role"] != "system" else dialog[:1] + dialog[3:]
            ids = fmt.encode_dialog_prompt(dialog, completion=True)
        answer: list[str] = []
        out.write("> ")
        for piece in eng.stream_text(ids, params, CancelToken()):
            answer.append(piece)
            out.write(piece)
            out.flush()
        out.write("\n---------------\n")
        dialog.append({"role": "assistant", "content": "".join(answer)})


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None) -> int:
    out = stdout or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m bitnet_py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="print a model's configuration")
    p_info.add_argument("model", help="path to a GGUF model")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("version", help="print versions, kernels and CPU features")
    p_gen = sub.add_parser("generate", help="generate a continuation of a prompt")
    _add_gen_args(p_gen)
    p_gen.add_argument("text", nargs="*", help="prompt(s) (as -p)")
    p_gen.add_argument("-p", "--prompt", action="append", help="prompt (repeatable; default 'Hello, my name is')")
    p_gen.add_argument("--echo", action="store_true", help="print the prompt before the continuation")
    p_gen.add_argument("--json", action="store_true", help="one JSON object per prompt")
    p_gen.add_argument("--stats", action="store_true", help="print timing to stderr")
    p_chat = sub.add_parser("chat", help="interactive chat (the original's --interactive --chat_format)")
    _add_gen_args(p_chat)
    p_chat.add_argument("--system", default=None, help="system message")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            return _info(args.model, args.json)
        if args.command == "generate":
            return _generate(args, out)
        if args.command == "chat":
            return _chat(args, stdin or sys.stdin, out)
        return _version()
    except BitNetError as e:
        msg = f"error: {e}"
        hint = getattr(e, "hint", None)
        if hint:
            msg += f"\nhint: {hint}"
        print(msg, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
