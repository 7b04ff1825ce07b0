# orgbill: slim, non-root; migrates and loads the plans file, then serves.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ORGBILL_ENV=production \
    ORGBILL_DATABASE_URL=sqlite+aiosqlite:////data/orgbill.db

WORKDIR /app
RUN useradd --create-home --uid 10001 orgbill && mkdir /data && chown orgbill:orgbill /data

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-compile . && rm -rf /root/.cache

USER orgbill
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

# ORGBILL_ENV=production refuses to start without real ORGBILL_JWT_SECRET and
# ORGBILL_API_KEY_SECRET values.
CMD ["sh", "-c", "orgbill migrate && orgbill plans sync && exec orgbill serve --host 0.0.0.0 --port 8000 --workers ${ORGBILL_WORKERS:-2}"]
