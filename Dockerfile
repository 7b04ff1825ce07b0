# orgbill: slim, non-root; migrates and loads the plans file, then serves.
# Stage 1 builds the wheel; stage 2 installs only that wheel (no source tree in the image),
# so the image runs exactly what `pip install orgbill` gives a user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ORGBILL_ENV=production \
    ORGBILL_DATABASE_URL=sqlite+aiosqlite:////data/orgbill.db

RUN useradd --create-home --uid 10001 orgbill && mkdir /data && chown orgbill:orgbill /data
COPY --from=build /wheels /wheels
RUN pip install --no-compile /wheels/*.whl && rm -rf /wheels /root/.cache

USER orgbill
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"

# ORGBILL_ENV=production refuses to start without real ORGBILL_JWT_SECRET and
# ORGBILL_API_KEY_SECRET values. The plans file is the one bundled in the wheel unless
# ORGBILL_PLANS_FILE names another.
CMD ["sh", "-c", "orgbill serve --check --host 0.0.0.0 --port 8000 && orgbill migrate && orgbill plans sync && exec orgbill serve --host 0.0.0.0 --port 8000 --workers ${ORGBILL_WORKERS:-2}"]
