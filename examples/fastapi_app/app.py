# The migration guide's FastAPI integration, as written; only the paths
# changed (BITNET_MODEL / BITNET_TOKENIZER, defaulting to the guide's).
import os

from fastapi import FastAPI, BackgroundTasks
from fastapi.responses import StreamingResponse
import bitnet_py as bitnet

MODEL_PATH = os.environ.get("BITNET_MODEL", "model.gguf")
TOKENIZER_PATH = os.environ.get("BITNET_TOKENIZER", "tokenizer.model")

app = FastAPI()
model = None
engine = None

@app.on_event("startup")
async def startup():
    global model, engine
    model = await bitnet.load_model_async(MODEL_PATH)
    tokenizer = await bitnet.create_tokenizer_async(TOKENIZER_PATH)
    engine = bitnet.AsyncInference(model, tokenizer)

@app.post("/generate")
async def generate(prompt: str):
    result = await engine.generate_async(prompt)
    return {"response": result}

@app.post("/stream")
async def stream_generate(prompt: str):
    async def generate_stream():
        async for token in engine.generate_stream(prompt):
            yield f"data: {token}\n\n"
    
    return StreamingResponse(generate_stream(), media_type="text/plain")
