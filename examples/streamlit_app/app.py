# The migration guide's Streamlit integration, as written; only the paths
# changed (BITNET_MODEL / BITNET_TOKENIZER, defaulting to the guide's) and
# `import asyncio` added (the guide's block calls asyncio.run without it).
import asyncio
import os

import streamlit as st
import bitnet_py as bitnet

MODEL_PATH = os.environ.get("BITNET_MODEL", "model.gguf")
TOKENIZER_PATH = os.environ.get("BITNET_TOKENIZER", "tokenizer.model")

@st.cache_resource
def load_model():
    model = bitnet.load_model(MODEL_PATH)
    tokenizer = bitnet.create_tokenizer(TOKENIZER_PATH)
    return bitnet.SimpleInference(model, tokenizer)

def main():
    st.title("BitNet Text Generation")
    
    engine = load_model()
    
    prompt = st.text_area("Enter your prompt:")
    
    if st.button("Generate"):
        with st.spinner("Generating..."):
            result = engine.generate(prompt)
            st.write(result)
    
    # Streaming example
    if st.button("Generate (Streaming)"):
        placeholder = st.empty()
        full_response = ""
        
        async def stream():
            nonlocal full_response
            async for token in engine.generate_stream(prompt):
                full_response += token
                placeholder.write(full_response)
        
        asyncio.run(stream())

if __name__ == "__main__":
    main()
