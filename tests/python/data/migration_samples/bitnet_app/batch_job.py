"""Nightly batch: prompts.txt -> results.jsonl (one generation per prompt)."""
import json
import sys
from pathlib import Path

from bitnet_helpers import build_engine, encode_prompts, load_settings

OUT = "results.jsonl"


def run(ckpt_dir: str, prompts_file: str = "prompts.txt", config: str = "configs/config.yaml") -> None:
    settings = load_settings(config)
    g = build_engine(ckpt_dir, settings["generation"])
    prompts = [l.strip() for l in Path(prompts_file).read_text().splitlines() if l.strip()]
    results = []
    for batch_start in range(0, len(prompts), g.gen_args.gen_bsz):
        batch = prompts[batch_start:batch_start + g.gen_args.gen_bsz]
        stats, outs = g.generate_all(encode_prompts(g, batch), use_cuda_graphs=False, use_sampling=False)
        for p, o in zip(batch, outs):
            results.append({"prompt": p, "tokens": list(map(int, o)), "text": g.tokenizer.decode(o)})
    with open(OUT, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    print("RESULT " + json.dumps([r["tokens"] for r in results]))


if __name__ == "__main__":
    run(*sys.argv[1:])
