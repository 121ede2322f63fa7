# One image for every Cellar service (API, migrate step, Ray head and workers): the driver and the
# workers must run the same Python, Ray and Cellar code.
FROM python:3.11-slim

WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

COPY requirements.txt constraints.txt ./
# torch first, CPU build, then everything else constrained to it (see constraints.txt)
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -c constraints.txt -r requirements.txt

COPY pyproject.toml README.md ./
COPY service ./service
COPY search_spaces ./search_spaces
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir -c constraints.txt --no-deps .

EXPOSE 8000
CMD ["cellar", "serve", "--host", "0.0.0.0", "--port", "8000"]
