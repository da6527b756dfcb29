"""CodeBuild in the local AWS: a build started there goes through CodeBuild's phases and pushes
the image its buildspec would push to the local ECR, so a local rollout can go live.

moto's CodeBuild runs nothing: a build is SUCCEEDED at its first read and ECR stays empty. Here
a build is IN_PROGRESS through the documented phases, each current phase without a status until
it ends, then SUCCEEDED (or FAILED, with the phase and why) and a last COMPLETED entry that has
no status, as BatchGetBuilds reports them
(https://docs.aws.amazon.com/codebuild/latest/userguide/view-build-details-phases.html,
https://docs.aws.amazon.com/codebuild/latest/APIReference/API_BuildPhase.html). Its POST_BUILD
phase does what the buildspec's ``docker push`` does, through ECR's API: the blobs a push
sends (the image's config and its layer) through the layer upload calls, skipping those ECR
has already (BatchCheckLayerAvailability), then the manifest with PutImage and its digest
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html). The repository
is the buildspec's ``$REPOSITORY``, the tag its ``$CODEBUILD_RESOLVED_SOURCE_VERSION``.

What AWS does and this does not: no source is fetched and no Docker build runs. The source
version is not resolved to a commit (the tag is the version as typed), and the image is a small
made-up one, one layer naming the project's source and the version: the same version gives
the same digest, another version another. ``LOCAL_BUILD_SECONDS`` (15) is how long a build
takes. StopBuild stays moto's own (the console never stops a build).

Why it lives in the local AWS's server (``devtools.moto_server`` installs it), and not in a
process that ``make run`` starts, as the local ingest stands in for Lambda, nor as a rule of
``devtools.aws_rules``: moto answers SUCCEEDED at the first read, so only the server itself
can say IN_PROGRESS while the push is still to come; anything outside it races the console's
first read. ``AwsRules`` hooks the caller's boto3 clients, on a virtual clock, in the tests
that turn it on; ``make run``'s worker never has it. In the server every client meets the same
CodeBuild: ``make run``, ``make manage``, the tests and docker compose.
"""

import contextlib
import copy
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError
from moto.codebuild.models import CodeBuildBackend
from moto.core.utils import iso_8601_datetime_with_milliseconds

# The phases after SUBMITTED, in order, each with its share of the build's time.
PHASES = [
    ("QUEUED", 0.05),
    ("PROVISIONING", 0.15),
    ("DOWNLOAD_SOURCE", 0.05),
    ("INSTALL", 0.05),
    ("PRE_BUILD", 0.05),
    ("BUILD", 0.4),
    ("POST_BUILD", 0.15),
    ("UPLOAD_ARTIFACTS", 0.05),
    ("FINALIZING", 0.05),
]
# "The UPLOAD_ARTIFACTS phase is always attempted, even if the BUILD phase fails."
ALWAYS = ("UPLOAD_ARTIFACTS", "FINALIZING")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# What a Docker tag may hold: https://docs.docker.com/reference/cli/docker/image/tag/
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

_lock = threading.Lock()  # the builds' records, written by their threads, read by requests
_moto_start_build = CodeBuildBackend.start_build


class BuildFailed(Exception):
    """A phase failed: ``status_code`` and the message are its context, as CodeBuild gives them."""

    def __init__(self, status_code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Image:
    manifest: str
    digest: str
    blobs: dict[str, bytes]  # digest -> the config's or the layer's bytes


def image_for(source: str, version: str) -> Image:
    """A small image, the same for the same source and version: one layer holding a file that
    names them, and the config that lists it."""
    content = f"{source}\n{version}\n".encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member = tarfile.TarInfo("etc/central-llm/build")
        member.size, member.mode, member.mtime = len(content), 0o644, 0
        tar.addfile(member, io.BytesIO(content))
    layer = gzip.compress(archive.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Labels": {
                    "org.opencontainers.image.source": source,
                    "org.opencontainers.image.revision": version,
                }
            },
            "rootfs": {"type": "layers", "diff_ids": [_digest(archive.getvalue())]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": _digest(config)},
            "layers": [{"mediaType": LAYER_TYPE, "size": len(layer), "digest": _digest(layer)}],
        },
        indent=3,
    )
    blobs = {_digest(config): config, _digest(layer): layer}
    return Image(manifest, _digest(manifest.encode()), blobs)


def push(ecr, repository: str, tag: str, image: Image) -> None:
    """What ``docker push`` does against ECR: the blobs ECR lacks, then the manifest."""
    checked = ecr.batch_check_layer_availability(
        repositoryName=repository, layerDigests=list(image.blobs)
    )["layers"]
    present = {
        layer["layerDigest"] for layer in checked if layer["layerAvailability"] == "AVAILABLE"
    }
    for digest, blob in image.blobs.items():
        if digest in present:
            continue  # docker push: "Layer already exists"
        upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload,
            partFirstByte=0,
            partLastByte=len(blob) - 1,
            layerPartBlob=blob,
        )
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[digest])
    # The same image under the same tag again: the push changes nothing and succeeds.
    with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(
            repositoryName=repository,
            imageManifest=image.manifest,
            imageManifestMediaType=MANIFEST_TYPE,
            imageTag=tag,
            imageDigest=image.digest,
        )


class LocalBuild:
    """One build of a project, run in its own thread as CodeBuild runs it, read or not."""

    def __init__(self, backend: CodeBuildBackend, project: dict, build: dict) -> None:
        self.region = backend.region_name
        self.project = project
        self.build = build
        self.seconds = float(os.environ.get("LOCAL_BUILD_SECONDS", "15"))
        self.repository = ""
        self.pushes = False
        self.phase_started = datetime.now(UTC)

    def start(self) -> None:
        with _lock:  # the project's, where moto's build has made-up ones
            self.build["source"] = copy.deepcopy(self.project["source"])
            self.build["environment"] = copy.deepcopy(self.project["environment"])
            self.build["phases"] = self.build["phases"][:1]  # SUBMITTED
        self._enter(PHASES[0][0])
        threading.Thread(target=self.run, name=self.build["id"], daemon=True).start()

    def run(self) -> None:
        failed = False
        try:
            for index, (phase, share) in enumerate(PHASES):
                if failed and phase not in ALWAYS:
                    continue
                if index:
                    self._enter(phase)
                time.sleep(self.seconds * share)
                try:
                    self._do(phase)
                except BuildFailed as exc:
                    failed = True
                    self._leave("FAILED", exc)
                else:
                    self._leave("SUCCEEDED")
            self._end("FAILED" if failed else "SUCCEEDED")
        except Exception as exc:  # a thread's end: the build must not stay IN_PROGRESS forever
            self._leave("FAULT", BuildFailed("CLIENT_ERROR", f"the local CodeBuild broke: {exc}"))
            self._end("FAULT")
            raise

    def _do(self, phase: str) -> None:
        version = self.build["sourceVersion"]
        uri = f"{self.repository}:{version}"
        if phase == "DOWNLOAD_SOURCE":
            self.repository, self.pushes = _recipe(self.project["source"].get("buildspec", ""))
            with _lock:
                self.build["resolvedSourceVersion"] = version
        elif phase == "BUILD" and not DOCKER_TAG.fullmatch(version):
            raise BuildFailed(
                "COMMAND_EXECUTION_ERROR",
                f'Error while executing command: docker build --tag "{uri}". Reason: exit status '
                f"1 (invalid reference format: {version!r} is no Docker tag; locally the tag is "
                "the source version as typed)",
            )
        elif phase == "POST_BUILD" and self.pushes:
            image = image_for(self.project["source"].get("location", ""), version)
            try:
                push(self._ecr(), self.repository, version, image)
            except (BotoCoreError, ClientError) as exc:
                raise BuildFailed(
                    "COMMAND_EXECUTION_ERROR",
                    f'Error while executing command: docker push "{uri}". Reason: exit status 1 '
                    f"({exc})",
                ) from exc

    def _ecr(self):
        """ECR of the local AWS, through its API like any client's (and recorded like them)."""
        return boto3.client(
            "ecr",
            region_name=self.region,
            endpoint_url=f"http://127.0.0.1:{os.environ['MOTO_PORT']}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the local AWS takes any
        )

    def _enter(self, phase: str) -> None:
        now = datetime.now(UTC)
        with _lock:
            self.phase_started = now
            self.build["currentPhase"] = phase
            self.build["phases"].append({"phaseType": phase, "startTime": _when(now)})

    def _leave(self, status: str, failure: BuildFailed | None = None) -> None:
        now = datetime.now(UTC)
        with _lock:
            self.build["phases"][-1].update(
                phaseStatus=status,
                endTime=_when(now),
                durationInSeconds=int((now - self.phase_started).total_seconds()),
            )
            if failure is not None:
                context = {"statusCode": failure.status_code, "message": str(failure)}
                self.build["phases"][-1]["contexts"] = [context]

    def _end(self, status: str) -> None:
        now = _when(datetime.now(UTC))
        with _lock:
            self.build["phases"].append({"phaseType": "COMPLETED", "startTime": now})
            self.build.update(
                currentPhase="COMPLETED", buildStatus=status, buildComplete=True, endTime=now
            )


def _recipe(buildspec: str) -> tuple[str, bool]:
    """The repository the buildspec pushes to, and whether its post_build pushes at all."""
    try:
        spec = yaml.safe_load(buildspec)
        repository = spec["env"]["variables"]["REPOSITORY"]
        commands = spec["phases"]["post_build"]["commands"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BuildFailed(
            "YAML_FILE_ERROR",
            "The local CodeBuild runs an inline buildspec that names its repository in "
            f"env.variables.REPOSITORY and has post_build commands; this one does not "
            f"({exc.__class__.__name__}: {exc})",
        ) from exc
    return repository, any(str(command).startswith("docker push") for command in commands)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _when(moment: datetime) -> str:
    return iso_8601_datetime_with_milliseconds(moment)


def start_build(
    self: CodeBuildBackend,
    project_name: str,
    source_version: str | None = None,
    artifact_override: dict | None = None,
) -> dict:
    build = _moto_start_build(self, project_name, source_version, artifact_override)
    LocalBuild(self, self.codebuild_projects[project_name].project_metadata, build).start()
    with _lock:
        return copy.deepcopy(build)


def batch_get_builds(self: CodeBuildBackend, ids: list[str]) -> list[dict]:
    """The builds as their threads left them (moto's own ends every build at the first read)."""
    with _lock:
        return [
            copy.deepcopy(build)
            for builds in self.build_metadata_history.values()
            for build in builds
            if build["id"] in ids
        ]


def install() -> None:
    CodeBuildBackend.start_build = start_build
    CodeBuildBackend.batch_get_builds = batch_get_builds
