# The Airbyte source image: `source-linkedin-crm` (spec, check, discover, read), following Airbyte's
# conventions for Python connectors: AIRBYTE_ENTRYPOINT equal to the absolute ENTRYPOINT, a non-root
# `airbyte` user (uid 1000) owning /airbyte, amd64. The Singer tap is in the image too:
#   docker run --rm --entrypoint tap-linkedin-crm <image> --about
# Build it with `make image` (needs a Docker daemon; our CI has none and does not build it).

# Build stage: the wheel's files under /install (no compiler, no cache in the final image).
FROM python:3.11-slim-bookworm AS build
WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY tap_linkedin_crm ./tap_linkedin_crm
RUN pip install --no-cache-dir --root-user-action=ignore --prefix=/install .

FROM python:3.11-slim-bookworm
ENV TZ=UTC \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN adduser --system --uid 1000 --group --home /airbyte airbyte \
    && mkdir -p /airbyte /config /secrets \
    && chown -R airbyte:airbyte /airbyte /config /secrets
COPY --from=build /install /usr/local
USER airbyte
WORKDIR /airbyte
ENV AIRBYTE_ENTRYPOINT="/usr/local/bin/source-linkedin-crm"
ENTRYPOINT ["/usr/local/bin/source-linkedin-crm"]
LABEL io.airbyte.name="source-linkedin-crm" \
      io.airbyte.version="0.1.0"
