# The migration guide's Flask integration, as written; only the paths
# changed (BITNET_MODEL / BITNET_TOKENIZER, defaulting to the guide's).
import os

from flask import Flask, request, jsonify
import bitnet_py as bitnet

MODEL_PATH = os.environ.get("BITNET_MODEL", "model.gguf")
TOKENIZER_PATH = os.environ.get("BITNET_TOKENIZER", "tokenizer.model")

app = Flask(__name__)

# Initialize model
model = bitnet.load_model(MODEL_PATH)
tokenizer = bitnet.create_tokenizer(TOKENIZER_PATH)
engine = bitnet.SimpleInference(model, tokenizer)

@app.route("/generate", methods=["POST"])
def generate():
    data = request.get_json()
    prompt = data.get("prompt", "")
    
    result = engine.generate(prompt)
    return jsonify({"response": result})

@app.route("/batch", methods=["POST"])
def batch_generate():
    data = request.get_json()
    prompts = data.get("prompts", [])
    
    processor = bitnet.BatchProcessor(model, tokenizer)
    results = processor.process_batch(prompts)
    
    return jsonify({"responses": results})
