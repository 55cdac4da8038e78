FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ORCHESTRATOR_VAR_DIR=/app/var
# Web worker processes behind port 8000, and how long answers in flight may run after
# SIGTERM (docs/deployment.md); `docker run -e WEB_WORKERS=4 ...` changes them.
ENV WEB_WORKERS=1 WEB_SHUTDOWN_TIMEOUT_S=10
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY orchestrator_site ./orchestrator_site
COPY providers ./providers
COPY routing ./routing
COPY chat ./chat
COPY analytics ./analytics
RUN pip install --no-cache-dir -c constraints.txt .
COPY . .
RUN bash scripts/install_local_model.sh python \
    && SECRET_KEY=build python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["python", "-m", "orchestrator_site.serve", "--host", "0.0.0.0", "--port", "8000"]
