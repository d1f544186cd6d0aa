# The hookline image: the receiver (`serve`), workers (`work`) and the tools (`check`, `send`).
#   docker build -t hookline .
#   docker run --rm -v $PWD/hookline.toml:/etc/hookline/hookline.toml:ro hookline \
#       check --config /etc/hookline/hookline.toml
# docker-compose.yml runs the whole pipeline with it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A regular (not editable) install; the sources are not kept in the image.
COPY pyproject.toml README.md /src/
COPY hookline /src/hookline
RUN pip install /src && rm -rf /src

# hookline needs no privilege and writes nothing to disk. A numeric USER lets Kubernetes'
# runAsNonRoot verify it.
RUN useradd --system --uid 10001 --user-group --create-home --shell /usr/sbin/nologin hookline
USER 10001:10001
WORKDIR /home/hookline

EXPOSE 8080
ENTRYPOINT ["hookline"]
CMD ["serve", "--host", "0.0.0.0"]
