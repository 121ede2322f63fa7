# One image for every Cellar service (API, migrate step, Ray head and workers): a Ray driver and
# its workers must run the same Python, Ray and Cellar code.
#
#   docker build -t cellar .                                   # CPU torch
#   docker build -t cellar:gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 .
#
# The Python here is the one requirements.txt was resolved on (tests/test_compose.py checks it).
FROM python:3.11-slim

# where torch==2.14.1 and torchvision==0.29.1 come from: the CPU builds by default, CUDA builds for GPU workers
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/cellar

COPY requirements.txt constraints.txt ./
# torch first, then everything else constrained to it (see constraints.txt), as `make install` does
RUN pip install "torch==2.14.1" "torchvision==0.29.1" --index-url "${TORCH_INDEX_URL}" \
 && pip install -c constraints.txt -r requirements.txt

COPY pyproject.toml README.md ./
COPY service ./service
COPY search_spaces ./search_spaces
COPY workers ./workers
COPY migrations ./migrations
RUN pip install -c constraints.txt --no-deps . \
 && pip check

# run as a user, in a directory it may write (the default SQLite store and generated API key of a
# plain `docker run` land there); datasets in files are mounted at /data (CELLAR_DATA_DIR)
RUN useradd --create-home --uid 1000 cellar \
 && mkdir -p /var/lib/cellar /data \
 && chown cellar /var/lib/cellar
USER cellar
WORKDIR /var/lib/cellar

EXPOSE 8000
CMD ["cellar", "serve", "--host", "0.0.0.0", "--port", "8000"]
