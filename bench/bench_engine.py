#!/usr/bin/env python3
"""Speed benchmark: our engine vs llama.cpp (llama-cpp-python) on the same
2B-4T-shaped weights, and vs transformers' BitNetForCausalLM on a smaller
model of the same architecture.

    python bench/bench_engine.py [--threads 1,2] [--reps 3] [--profile]

What it does, in one run:
  1. builds (or reuses, under bench/models/, git-ignored) the seeded synthetic
     model with the exact microsoft/bitnet-b1.58-2B-4T shapes in llama.cpp's
     SiLU `bitnet` architecture, as TQ2_0 and TQ1_0 with a Q6_K head (tied
     embedding), the files that llama.cpp loads: both engines run the same
     files, so the same weights and the same graph;
  2. builds the engine (cmake, build dir build-perf) and bench/bn_bench.c;
  3. for each repetition, each thread count and each format, runs our engine
     and llama.cpp one after the other (interleaved, each in its own process,
     so that load, peak RSS and noise from other work on the machine hit both
     alike): prefill of 128 tokens as one batch, then 64 greedy decode steps,
     both with an F16 KV cache (llama.cpp's default; --kv f32 for float32);
  4. runs transformers' BitNetForCausalLM (float32, CPU torch, eager) and our
     engine on a smaller model of the bitnet-b1.58 architecture (safetensors
     and GGUF I2_S of the same weights);
  5. prints a table (best of the repetitions; medians in the JSON) with the
     ratios ours / llama.cpp TQ2_0 and ours / transformers, the load average
     before each run, and writes bench/results/bench.json.
With --profile the engine also reports where a decode step's time goes
(per-context phase timers, src/profile.h).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MODELS = BENCH / "models"
BUILD = ROOT / "build-perf"
DRIVER = BUILD / "bn_bench"
KBENCH = BUILD / "bn_kernel_bench"

SMALL = dict(n_vocab=32000, n_embd=1024, n_layer=4, n_head=16, n_head_kv=4, n_ff=2816, n_ctx=512)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Models and build
# --------------------------------------------------------------------------


def big_model(wtype: str) -> Path:
    return MODELS / f"2b4t-bitnet-{wtype}-seed0.gguf"


def ensure_big_models(types: list[str]) -> None:
    missing = [t for t in types if not big_model(t).exists()]
    if not missing:
        return
    MODELS.mkdir(parents=True, exist_ok=True)
    log(f"writing the 2B-4T-shaped model ({','.join(missing)}); a minute or two per format")
    subprocess.run([sys.executable, "-m", "bitnet_py.synthetic", "--shape", "2b4t", "--arch",
                    "bitnet", "--type", ",".join(missing), "--head-type", "q6_k", "--out",
                    str(MODELS)], check=True, cwd=ROOT)


def ensure_small_model() -> tuple[Path, Path]:
    d = MODELS / "small-b158"
    gguf, hf = d / "small-i2_s.gguf", d / "hf"
    if gguf.exists() and (hf / "model.safetensors").exists():
        return gguf, hf
    sys.path.insert(0, str(ROOT / "python"))
    from bitnet_py import synthetic as S

    d.mkdir(parents=True, exist_ok=True)
    m = S.make_model("bitnet-b1.58", seed=1, **SMALL)
    S.write_gguf(m, gguf, "i2_s", "f16")
    S.write_safetensors(m, hf)
    return gguf, hf


def build_engine() -> None:
    if not (BUILD / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(BUILD), "-DBN_WERROR=OFF"], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(BUILD), "-j2", "--target", "bitnet_static"],
                   check=True, stdout=subprocess.DEVNULL)
    for src, exe in ((BENCH / "bn_bench.c", DRIVER), (BENCH / "bn_kernel_bench.c", KBENCH)):
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-I", str(ROOT / "include"), "-I",
                        str(ROOT / "src"), str(src), str(BUILD / "libbitnet.a"), "-lpthread", "-lm",
                        "-o", str(exe)], check=True)


# --------------------------------------------------------------------------
# Runners (each in its own process)
# --------------------------------------------------------------------------


def run_ours(model: Path, threads: int, n_prompt: int, n_gen: int, profile: bool,
             ceiling: bool = False, kv: str = "f32") -> dict:
    cmd = [str(DRIVER), str(model), str(threads), str(n_prompt), str(n_gen), "1"]
    if kv == "f16":
        cmd.append("--kv-f16")
    if profile:
        cmd.append("--profile")
    if ceiling:
        cmd.append("--ceiling")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return {"load_s": r["load_s"], "pp": r["pp_best"], "tg": r["tg_best"],
            "peak_rss_mb": r["peak_rss_bytes"] / 2**20, "kernels": r["kernels"],
            "weight_mb": r["weight_bytes"] / 2**20, "kv_mb": r["kv_bytes"] / 2**20,
            "profile": r.get("profile"), "ceiling": r.get("ceiling")}


def llama_worker(model: str, threads: int, n_prompt: int, n_gen: int, kv: str) -> None:
    """Runs in a child process: prints one JSON line."""
    import numpy as np
    from llama_cpp import Llama

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kv_kw: dict[str, Any] = {} if kv == "f16" else {"type_k": 0, "type_v": 0}  # 0: GGML F32
    t = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=n_prompt + n_gen + 8, n_batch=n_prompt,
                n_ubatch=n_prompt, n_threads=threads, n_threads_batch=threads, verbose=False,
                use_mmap=True, **kv_kw)
    load_s = time.perf_counter() - t
    n_vocab = llm.n_vocab()
    prompt = [3 + (i * 7919) % (n_vocab - 3) for i in range(n_prompt)]
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    pp = n_prompt / (time.perf_counter() - t)

    def last_argmax() -> int:  # logits of the last token of the last eval
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))

    nxt = last_argmax()
    t = time.perf_counter()
    for _ in range(n_gen):
        llm.eval([nxt])
        nxt = last_argmax()
    tg = n_gen / (time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load_s": load_s, "pp": pp, "tg": tg, "peak_rss_mb": rss / 1024,
                      "python_rss_mb": base_rss / 1024}))


def run_llama(model: Path, threads: int, n_prompt: int, n_gen: int, passive: bool = False,
              kv: str = "f16") -> dict:
    env = dict(os.environ)
    if passive:  # OpenMP workers sleep instead of spinning (kinder on a busy machine)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, __file__, "--llama-worker", str(model), str(threads),
                          str(n_prompt), str(n_gen), kv], check=True, capture_output=True,
                         text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def hf_worker(hf_dir: str, threads: int, n_prompt: int, n_gen: int) -> None:
    import torch
    import torch._dynamo

    torch._dynamo.config.disable = True
    torch.set_num_threads(threads)
    from transformers import BitNetForCausalLM

    t = time.perf_counter()
    try:
        model = BitNetForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    except TypeError:
        model = BitNetForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    except ImportError:  # no accelerate: build the modules by hand (see test_vs_transformers)
        sys.path.insert(0, str(ROOT / "tests" / "python"))
        from test_vs_transformers import _load_hf

        model = _load_hf(Path(hf_dir))
    model.eval()
    load_s = time.perf_counter() - t
    n_vocab = model.config.vocab_size
    ids = torch.tensor([[3 + (i * 7919) % (n_vocab - 3) for i in range(n_prompt)]])
    with torch.no_grad():
        t = time.perf_counter()
        out = model(ids, use_cache=True)
        pp = n_prompt / (time.perf_counter() - t)
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        t = time.perf_counter()
        for _ in range(n_gen):
            out = model(nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
        tg = n_gen / (time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load_s": load_s, "pp": pp, "tg": tg, "peak_rss_mb": rss / 1024}))


def run_hf(hf_dir: Path, threads: int, n_prompt: int, n_gen: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--hf-worker", str(hf_dir), str(threads),
                          str(n_prompt), str(n_gen)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
    s = {"runs": runs}
    for k in ("pp", "tg", "load_s", "peak_rss_mb"):
        vals = [r[k] for r in runs]
        s[k + "_best"] = (min if k in ("load_s", "peak_rss_mb") else max)(vals)
        s[k + "_median"] = statistics.median(vals)
    return s


def print_profile(prof: dict) -> None:
    steps = prof.get("steps", 0)
    if not steps:
        return
    names = [k for k in prof if k != "steps"]
    total = sum(prof[k] for k in names)
    print(f"    decode step {1e3 * total / steps:.2f} ms (timed phases), {steps} steps:")
    for k in sorted(names, key=lambda k: -prof[k]):
        print(f"      {k:<8} {1e3 * prof[k] / steps:7.3f} ms  {100 * prof[k] / total:5.1f} %")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--llama-worker":
        llama_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--hf-worker":
        hf_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--formats", default="tq2_0,tq1_0")
    ap.add_argument("--n-prompt", type=int, default=128)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--profile", action="store_true", help="print a decode-step breakdown")
    ap.add_argument("--kernels", action="store_true",
                    help="also measure the kernels' bytes/s against a plain streaming read, and "
                         "each decode step against a streaming read of the same bytes run just "
                         "before it (bn_bench --ceiling)")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--llama-omp-passive", action="store_true",
                    help="run llama.cpp with OMP_WAIT_POLICY=PASSIVE (its OpenMP workers sleep "
                         "instead of spinning: much better when the machine is oversubscribed)")
    ap.add_argument("--kv", choices=["f16", "f32"], default="f16",
                    help="KV cache of both engines on the 2B-4T files (default f16: llama.cpp's "
                         "default cache; f32 sets its type_k/type_v to F32). The transformers "
                         "comparison keeps float32, as transformers does")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--json", default=str(BENCH / "results" / "bench.json"))
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    formats = a.formats.split(",")

    ensure_big_models(formats)
    build_engine()
    try:
        import llama_cpp

        llama_info = {"version": llama_cpp.__version__,
                      "system_info": llama_cpp.llama_print_system_info().decode()}
    except ImportError:
        llama_info = None
        a.no_llama = True
    results: dict = {"machine": {"cpu": os.uname().machine, "nproc": os.cpu_count()},
                     "llama_cpp": llama_info, "llama_omp_passive": a.llama_omp_passive,
                     "n_prompt": a.n_prompt, "n_gen": a.n_gen, "kv": a.kv,
                     "load_before": loadavg(), "engine": {}, "llama": {}, "hf": {}}
    ours: dict = {}
    llama: dict = {}
    for rep in range(a.reps):
        for t in threads:
            for f in formats:
                la = loadavg()
                r = run_ours(big_model(f), t, a.n_prompt, a.n_gen, a.profile, a.kernels, a.kv)
                r["load_avg"] = la
                ours.setdefault((f, t), []).append(r)
                log(f"[{rep}] ours {f} {t}t: pp {r['pp']:.1f} tg {r['tg']:.2f} (load {la})")
                if not a.no_llama:
                    la = loadavg()
                    r = run_llama(big_model(f), t, a.n_prompt, a.n_gen, a.llama_omp_passive,
                                  a.kv)
                    r["load_avg"] = la
                    llama.setdefault((f, t), []).append(r)
                    log(f"[{rep}] llama.cpp {f} {t}t: pp {r['pp']:.1f} tg {r['tg']:.2f} "
                        f"(load {la})")
    hf: dict = {}
    ours_small: dict = {}
    if not a.no_hf:
        gguf, hf_dir = ensure_small_model()
        for rep in range(max(1, min(a.reps, 2))):
            for t in threads:
                la = loadavg()
                r = run_ours(gguf, t, a.n_prompt, a.n_gen, False)
                r["load_avg"] = la
                ours_small.setdefault(t, []).append(r)
                la = loadavg()
                r = run_hf(hf_dir, t, a.n_prompt, a.n_gen)
                r["load_avg"] = la
                hf.setdefault(t, []).append(r)
                log(f"[{rep}] small {t}t: ours tg {ours_small[t][-1]['tg']:.1f}, "
                    f"transformers tg {r['tg']:.2f}")

    read_best: dict = {}
    if a.kernels:
        kruns = []
        for _ in range(3):
            for t in threads:
                la = loadavg()
                r = json.loads(subprocess.run([str(KBENCH), "3", str(t)], check=True,
                                              capture_output=True, text=True).stdout)
                r["load_avg"] = la
                kruns.append(r)
                read_best[t] = max(read_best.get(t, 0.0), r["read_GBps"])
        results["kernel_bandwidth"] = kruns
    print(f"\nBitNet b1.58 2B-4T shapes (synthetic weights, `bitnet` SiLU arch, Q6_K tied head); "
          f"prefill {a.n_prompt} / decode {a.n_gen} tokens/s, best of {a.reps} interleaved runs; "
          f"{a.kv.upper()} KV cache in both engines; "
          f"load average before: {results['load_before']}, after: {loadavg()}")
    hdr = ("| engine, weights | thr | prefill t/s | decode t/s | pp / llama TQ2_0 | "
           "tg / llama TQ2_0 | load s | peak RSS MiB | decode GB/s | of read | of bound |")
    print(hdr)
    print("|" + "---|" * 11)
    for t in threads:
        base = summarize(llama[("tq2_0", t)]) if ("tq2_0", t) in llama else None
        rows = [(f"ours, {f}", summarize(ours[(f, t)])) for f in formats]
        rows += [(f"llama.cpp, {f}", summarize(llama[(f, t)])) for f in formats
                 if (f, t) in llama]
        for name, s in rows:
            rp = f"{s['pp_best'] / base['pp_best']:.2f}x" if base else "-"
            rt = f"{s['tg_best'] / base['tg_best']:.2f}x" if base else "-"
            # bytes streamed per decode step: our weights as used (repacked);
            # llama.cpp's: the file's tensor data (about the file size)
            wmb = s["runs"][0].get("weight_mb")
            if wmb is None:
                fmb = os.path.getsize(big_model(name.split(", ")[1])) / 2**20
                wmb = fmb
            s["decode_GBps"] = wmb * 2**20 * s["tg_best"] / 1e9
            # the weights' bytes per decode step over the best streaming read
            # at the same thread count (bn_kernel_bench, --kernels): the
            # fraction of the bandwidth bound a decode step reaches
            frac = "-"
            if t in read_best:
                s["decode_frac_of_read"] = s["decode_GBps"] / read_best[t]
                frac = f"{100 * s['decode_frac_of_read']:.0f} %"
            # the same, measured step by step against a read of the same bytes
            # just before each step (bn_bench --ceiling): weights only / weights
            # plus the KV rows the step reads; the median over the repetitions
            bound = "-"
            ceils = [r["ceiling"] for r in s["runs"] if r.get("ceiling")]
            if ceils:
                s["step_frac_of_bound"] = statistics.median(c["frac"] for c in ceils)
                s["step_frac_of_bound_with_kv"] = statistics.median(
                    c["frac_with_kv"] for c in ceils)
                bound = (f"{100 * s['step_frac_of_bound']:.0f} / "
                         f"{100 * s['step_frac_of_bound_with_kv']:.0f} %")
            print(f"| {name} | {t} | {s['pp_best']:.1f} | {s['tg_best']:.2f} | {rp} | {rt} | "
                  f"{s['load_s_best']:.2f} | {s['peak_rss_mb_best']:.0f} | "
                  f"{s['decode_GBps']:.1f} | {frac} | {bound} |")
            key = name.replace(", ", "_").replace(".", "")
            bucket = results["llama" if name.startswith("llama") else "engine"]
            bucket[f"{key}_{t}t"] = s
            if base:
                s["pp_ratio_vs_llama_tq2_0"] = s["pp_best"] / base["pp_best"]
                s["tg_ratio_vs_llama_tq2_0"] = s["tg_best"] / base["tg_best"]
    if hf:
        print(f"\nSmaller bitnet-b1.58 model ({SMALL}); ours on I2_S GGUF vs transformers "
              f"BitNetForCausalLM float32 (CPU torch) on the same weights")
        print("| threads | ours pp | transformers pp | ratio | ours tg | transformers tg | ratio |")
        print("|" + "---|" * 7)
        for t in threads:
            so, sh = summarize(ours_small[t]), summarize(hf[t])
            print(f"| {t} | {so['pp_best']:.1f} | {sh['pp_best']:.1f} | "
                  f"{so['pp_best'] / sh['pp_best']:.1f}x | {so['tg_best']:.1f} | "
                  f"{sh['tg_best']:.2f} | {so['tg_best'] / sh['tg_best']:.1f}x |")
            results["hf"][f"{t}t"] = {"ours": so, "transformers": sh,
                                      "pp_ratio": so["pp_best"] / sh["pp_best"],
                                      "tg_ratio": so["tg_best"] / sh["tg_best"]}
    if a.kernels:
        print("\nof bound: the decode step's time against a streaming read of its bytes run "
              "just before it, summed over the steps of one extra decode run (weights / weights "
              "plus KV rows read); median of the repetitions. Per run:")
        for (f, t), runs in sorted(ours.items()):
            for r in runs:
                c = r.get("ceiling")
                if c:
                    print(f"  ours {f} {t} thr: read {c['read_GBps_median']:.1f} GB/s (median), "
                          f"steps {c['step_GBps']:.1f} GB/s, {100 * c['frac']:.1f} / "
                          f"{100 * c['frac_with_kv']:.1f} %  (load {r['load_avg']})")
        print("\nKernels, bytes/s (GB/s) vs a plain AVX-512 streaming read (prefetching, as the "
              "kernels do) on as many threads, interleaved:")
        for r in results["kernel_bandwidth"]:
            print(f"  {r['threads']} thr: read {r['read_GBps']:.1f}, "
                  f"ternary matvec {r['ternary_GBps']:.1f} "
                  f"({100 * r['ternary_frac']:.0f} %), Q6_K head {r['head_q6_k_GBps']:.1f} "
                  f"({100 * r['head_frac']:.0f} %)  (load {r['load_avg']})")
    if a.profile:
        print("\nWhere a decode step goes (ours, summed over all runs of each config):")
        for (f, t), runs in sorted(ours.items()):
            prof: dict = {}
            for r in runs:
                for k, v in (r.get("profile") or {}).items():
                    prof[k] = prof.get(k, 0) + v
            print(f"  {f}, {t} thread(s):")
            print_profile(prof)
            results["engine"][f"profile_{f}_{t}t"] = prof
    results["load_after"] = loadavg()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
