# bitnet_py OpenAI-compatible server.
#   docker build -t bitnet-py .
#   docker run --rm -p 127.0.0.1:8000:8000 -v /path/to/models:/models:ro \
#       -e BITNET_API_KEY=change-me bitnet-py --model /models/model.gguf
# The model is mounted, never baked into the image. scripts/docker_smoke.sh
# builds and checks the image; tests/python/test_docker.py emulates it.

FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake ninja-build git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl "fastapi>=0.110" "uvicorn>=0.29" && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bitnet
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
# Inside the container the server must listen on all interfaces; publish the
# port only where it should be reachable (e.g. -p 127.0.0.1:8000:8000).
# On SIGTERM (docker stop) the server drains: new requests get 503 while the
# admitted ones finish, for at most --drain-timeout seconds, which must stay
# below the stop timeout (docker stop: 10 s by default). Raise both together:
#   docker run --stop-timeout 65 ... bitnet-py --model /models/model.gguf --drain-timeout 60
ENTRYPOINT ["python", "-m", "bitnet_py.server", "--host", "0.0.0.0", "--port", "8000", "--drain-timeout", "8"]
CMD ["--model", "/models/model.gguf"]
