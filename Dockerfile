# The probe as a container: `docker run --rm -v probe-data:/data IMAGE run`
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY probe ./probe
COPY measurements ./measurements
COPY targets ./targets
RUN pip install --no-cache-dir . && rm -rf /src \
    && useradd --create-home --uid 10001 probe \
    && mkdir /data && chown probe /data

USER probe
WORKDIR /home/probe
# Results go to /data/results.sqlite unless --db says otherwise; mount a volume there.
ENV PROBE_DB=/data/results.sqlite
VOLUME ["/data"]
ENTRYPOINT ["probe"]
CMD ["run"]
