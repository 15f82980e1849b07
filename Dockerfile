# One image for every jobqueue process: web (gunicorn), worker (runworker) and cleanup (purge_jobs).
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that code changes reuse this layer.
COPY pyproject.toml README.md ./
COPY jobqueue/__init__.py jobqueue/__init__.py
COPY project/__init__.py project/__init__.py
COPY demo/__init__.py demo/__init__.py
RUN pip install .

COPY . .
RUN pip install --no-deps . \
    && DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic DATABASE_URL=postgres://build@localhost/build \
       python manage.py collectstatic --noinput \
    && useradd --system --uid 1000 --home-dir /app jobqueue

USER jobqueue
EXPOSE 8000
ENV GUNICORN_BIND=0.0.0.0:8000

# The web process by default; docker-compose.yml gives worker and cleanup their own commands.
CMD ["gunicorn", "project.asgi", "--config", "project/gunicorn.conf.py"]
