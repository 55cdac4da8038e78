FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ORCHESTRATOR_VAR_DIR=/app/var
# Web worker processes behind port 8000, and how long answers in flight may run after
# SIGTERM (docs/deployment.md); `docker run -e WEB_WORKERS=4 ...` changes them.
ENV WEB_WORKERS=1 WEB_SHUTDOWN_TIMEOUT_S=10
# build-essential and cmake compile the local model runtime (llama-cpp-python); curl serves the
# health checks of docker-compose.yml.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY orchestrator_site ./orchestrator_site
COPY core ./core
COPY providers ./providers
COPY routing ./routing
COPY chat ./chat
COPY analytics ./analytics
COPY gateway ./gateway
RUN pip install --no-cache-dir -c constraints.txt .
# The local model runtime comes before the rest of the source, so editing the code does not
# recompile it (a few minutes).
COPY scripts/install_local_model.sh ./scripts/
RUN bash scripts/install_local_model.sh python
# .dockerignore keeps .env, .venv, var/ and .git out of the image.
COPY . .
# The processes run as `app`, which owns var/. The folders docker-compose.yml mounts volumes on
# (exports, router versions) exist here, owned by `app`, so a new named volume starts out
# writable by it (Docker copies the folder's owner into an empty volume).
RUN SECRET_KEY=build python manage.py collectstatic --noinput \
    && useradd --system --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /app/var/exports /app/var/router \
    && chown -R app:app /app/var
USER app
EXPOSE 8000
CMD ["python", "-m", "orchestrator_site.serve", "--host", "0.0.0.0", "--port", "8000"]
