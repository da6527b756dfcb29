# The console image: web (gunicorn) and RQ workers run from it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml requirements.lock README.md ./
COPY core ./core
COPY console ./console
COPY provisioning ./provisioning
COPY audit_explorer ./audit_explorer
COPY api_access ./api_access
COPY centralllm ./centralllm
COPY lambda ./lambda
COPY inference ./inference
COPY manage.py ./
# EXTRAS="[dev]" builds the image the local-aws service runs moto from.
ARG EXTRAS=""
RUN pip install --no-cache-dir -c requirements.lock ".${EXTRAS}" \
 && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0 \
 && python -m llm_audit_ingest.bundle

RUN useradd --system --home /app console && mkdir -p /app/var && chown console /app/var
USER console
EXPOSE 8000
CMD ["gunicorn", "console.wsgi", "--config", "python:console.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
