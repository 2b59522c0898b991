# The probe as a container. By default it runs the daemon, with its database on a volume:
#   docker run -d --name probe -v probe-data:/data -v "$PWD/probe.toml:/config/probe.toml:ro" IMAGE
# Any other command is a probe command: `docker run --rm -v probe-data:/data IMAGE run`.
# BASE: any Debian-like image with Python 3.11+ and its venv module. Without Docker Hub,
# contrib/docker/debian-base.sh makes one from Debian's packages (CI builds on that).
ARG BASE=python:3.11-slim
FROM ${BASE}

WORKDIR /src
COPY pyproject.toml README.md ./
COPY probe ./probe
COPY measurements ./measurements
COPY targets ./targets
COPY contrib/docker/entrypoint.sh /usr/local/bin/probe-entrypoint
# A virtual environment: Debian's own Python refuses a system-wide pip install (PEP 668).
RUN python3 -m venv /opt/probe && /opt/probe/bin/pip install --no-cache-dir . && rm -rf /src \
    && chmod 755 /usr/local/bin/probe-entrypoint \
    && useradd --create-home --uid 10001 --user-group probe \
    && mkdir /data && chown probe:probe /data

# Never root by default. A new named volume takes /data's owner from the image; a bind mount
# keeps its host owner, and the entrypoint says what to do when that is not writable (or,
# started with --user 0, hands the directory to probe and runs as probe).
USER probe
ENV PATH=/opt/probe/bin:$PATH
WORKDIR /home/probe
# Results go to /data/results.sqlite unless PROBE_DB says otherwise; mount a volume there.
# The config is /config/probe.toml when mounted, or the file PROBE_CONFIG names.
ENV PROBE_DB=/data/results.sqlite
VOLUME ["/data"]
# `docker stop` sends SIGTERM: the daemon stops new work, gives in-flight inputs a short
# deadline and exits 0 (a sweep of `probe run` exits 143). Give it time: docker stop -t 60.
STOPSIGNAL SIGTERM
ENTRYPOINT ["probe-entrypoint"]
CMD ["daemon"]
