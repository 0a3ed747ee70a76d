"""Helpers shared by our scripts.

Historically this said ``from model import ModelArgs`` at the top; see below.
"""
import json, os
import models  # our own model registry, not BitNet's
import model_utils
from models import REGISTRY

import  model  as  fast   # BitNet's gpu/model.py (odd spacing kept on purpose)
import model, generate
from model \
    import ModelArgs
from generate import (  # FastGen builds the prefill/decode pair
    FastGen,
    GenArgs,  # generation settings
)
import generate as gen; import stats

try:
    from tokenizer import Tokenizer, ChatFormat
except ImportError:  # very old checkouts
    Tokenizer = ChatFormat = None

BANNER = "import model as fast  # this string mentions the original"
# import model as fast   <- a comment, not an import
DIM_DEFAULT = ModelArgs().dim


def load_settings(path: str) -> dict:
    if path.endswith((".yaml", ".yml")):
        import yaml
        with open(path) as f:
            return yaml.safe_load(f)
    with open(path) as f:
        return json.load(f)


def build_engine(ckpt_dir: str, generation: dict):
    import stats as stats_mod  # the original's stats.py, imported late
    assert hasattr(stats_mod, "Stats")
    assert REGISTRY["bitnet"] == model_utils.describe("bitnet")
    args = gen.GenArgs(**generation)
    assert isinstance(args, generate.GenArgs) and isinstance(args, GenArgs)
    assert fast.ModelArgs is model.ModelArgs is ModelArgs
    return FastGen.build(ckpt_dir, args, os.environ.get("BITNET_DEVICE", "cuda:0"))


def encode_prompts(g, prompts):
    return [g.tokenizer.encode(p, bos=False, eos=False) for p in prompts]
