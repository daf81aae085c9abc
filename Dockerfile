# cocmail: slim Python 3.11, non-root, config at /etc/cocmail/config.toml,
# database and maildir on the volume /var/lib/cocmail.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COCMAIL_CONFIG=/etc/cocmail/config.toml \
    COCMAIL_HEALTH_URL=http://127.0.0.1:8026/healthz

RUN useradd --system --uid 10001 --home-dir /var/lib/cocmail --shell /usr/sbin/nologin cocmail \
 && mkdir -p /etc/cocmail /var/lib/cocmail \
 && chown 10001:10001 /var/lib/cocmail

WORKDIR /opt/cocmail
COPY pyproject.toml README.md ./
COPY cocmail ./cocmail
COPY migrations ./migrations
COPY templates ./templates
RUN pip install --no-cache-dir . && rm -rf /opt/cocmail/*

USER 10001:10001
VOLUME ["/var/lib/cocmail"]
# SMTP, LMTP and the HTTP port (/healthz, /metrics), as configured in config.toml.
EXPOSE 8025 8024 8026

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['COCMAIL_HEALTH_URL'], timeout=4)"]

ENTRYPOINT ["cocmail"]
CMD ["serve", "--config", "/etc/cocmail/config.toml"]
