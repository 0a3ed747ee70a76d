"""Interactive chat with the original implementation; one prompt a line, EOF quits."""
import json
import sys

import generate
import tokenizer as tok_lib


def chat(ckpt_dir: str, gen_length: int = 12) -> None:
    g = generate.FastGen.build(ckpt_dir, generate.GenArgs(gen_length=gen_length), "cuda:0")
    chat_format = tok_lib.ChatFormat(g.tokenizer)
    history = []
    while True:
        try:
            prompt = input("enter prompt: ")
        except EOFError:
            print("exiting")
            break
        dialog = [{"role": "user", "content": prompt}]
        tokens = chat_format.encode_dialog_prompt(dialog, completion=True)
        _, out = g.generate_all([tokens], use_cuda_graphs=True, use_sampling=False)
        reply = chat_format.decode(out[0])
        history.append(list(map(int, out[0])))
        print(f"> {prompt}\n{reply}\n---------------")
    print("RESULT " + json.dumps(history))


if __name__ == "__main__":
    chat(sys.argv[1])
