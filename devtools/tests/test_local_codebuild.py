"""The local AWS's CodeBuild (devtools.local_codebuild), over HTTP as the console meets it: a
build runs through CodeBuild's documented phases and pushes the image the buildspec names to
ECR, through ECR's API. The session's local AWS builds in LOCAL_BUILD_SECONDS (1 s)."""

import hashlib
import json
import time
from string import Template

from centralllm import aws
from devtools.services import ROOT
from devtools.testing import unique

SOURCE = "https://github.com/acme/llm"
# https://docs.aws.amazon.com/codebuild/latest/userguide/view-build-details-phases.html
PHASES = [
    "SUBMITTED",
    "QUEUED",
    "PROVISIONING",
    "DOWNLOAD_SOURCE",
    "INSTALL",
    "PRE_BUILD",
    "BUILD",
    "POST_BUILD",
    "UPLOAD_ARTIFACTS",
    "FINALIZING",
    "COMPLETED",
]


def project(repository: str) -> str:
    """A project with the inference image's buildspec, inline as provisioning makes it."""
    name = unique("build")
    buildspec = Template((ROOT / "inference/buildspec.yml").read_text()).substitute(
        AccountId="123456789012", Region=aws.region(), EcrRepository=repository
    )
    aws.client("codebuild").create_project(
        name=name,
        source={"type": "GITHUB", "location": SOURCE, "buildspec": buildspec},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_LARGE",
        },
        serviceRole="arn:aws:iam::123456789012:role/codebuild-mistral8b-vllm-role",
    )
    return name


def build(name: str, version: str) -> tuple[dict, list[dict]]:
    """Starts a build and reads it until it ends: (the build at its end, every read)."""
    codebuild = aws.client("codebuild")
    started = codebuild.start_build(projectName=name, sourceVersion=version)["build"]
    reads = [started]
    while reads[-1]["buildStatus"] == "IN_PROGRESS":
        time.sleep(0.05)
        reads.append(codebuild.batch_get_builds(ids=[started["id"]])["builds"][0])
        assert len(reads) < 200, "the build did not end within 10 s"
    return reads[-1], reads


def test_a_build_goes_through_its_phases_and_pushes_the_image_the_buildspec_names():
    ecr, repository = aws.client("ecr"), unique("mistral8b-vllm")
    ecr.create_repository(repositoryName=repository)
    name = project(repository)

    ended, reads = build(name, "v1.2")

    # In progress at first, the current phase without a status until it ends.
    assert (reads[0]["buildStatus"], reads[0]["currentPhase"]) == ("IN_PROGRESS", "QUEUED")
    assert any(read["currentPhase"] == "BUILD" for read in reads)
    for read in reads[:-1]:
        assert "phaseStatus" not in read["phases"][-1]
        assert read["phases"][-1]["phaseType"] == read["currentPhase"]
    assert (ended["buildStatus"], ended["currentPhase"], ended["buildComplete"]) == (
        "SUCCEEDED",
        "COMPLETED",
        True,
    )
    assert [phase["phaseType"] for phase in ended["phases"]] == PHASES
    assert {phase.get("phaseStatus") for phase in ended["phases"][:-1]} == {"SUCCEEDED"}
    assert "phaseStatus" not in ended["phases"][-1]  # COMPLETED marks the end
    assert ended["resolvedSourceVersion"] == "v1.2"
    assert ended["source"]["location"] == SOURCE

    # The image under the buildspec's $REPOSITORY, tagged with the version; its digest is
    # its manifest's, and the blobs the manifest names are in ECR with their sizes.
    [image] = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "v1.2"}])[
        "images"
    ]
    manifest = image["imageManifest"]
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    assert image["imageId"]["imageDigest"] == digest
    parsed = json.loads(manifest)
    assert parsed["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    blobs = {blob["digest"]: blob["size"] for blob in [parsed["config"], *parsed["layers"]]}
    found = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=list(blobs))
    assert {layer["layerDigest"]: layer["layerSize"] for layer in found["layers"]} == blobs

    # The same version again is the same image (the push succeeds, nothing changes);
    # another version is another image.
    again, _ = build(name, "v1.2")
    assert again["buildStatus"] == "SUCCEEDED"
    assert build(name, "v1.3")[0]["buildStatus"] == "SUCCEEDED"
    details = ecr.describe_images(repositoryName=repository)["imageDetails"]
    digests = {detail["imageTags"][0]: detail["imageDigest"] for detail in details}
    assert digests["v1.2"] == digest != digests["v1.3"]


def test_a_push_refused_by_ecr_fails_the_build_in_post_build_and_says_why():
    name = project(unique("never-created"))

    ended, _ = build(name, "v1")

    assert ended["buildStatus"] == "FAILED"
    failed = [phase for phase in ended["phases"] if phase.get("phaseStatus") == "FAILED"]
    assert [phase["phaseType"] for phase in failed] == ["POST_BUILD"]
    [context] = failed[0]["contexts"]
    assert context["statusCode"] == "COMMAND_EXECUTION_ERROR"
    assert context["message"].startswith('Error while executing command: docker push "never-')
    assert "RepositoryNotFoundException" in context["message"]
    # "The UPLOAD_ARTIFACTS phase is always attempted"; then the build ends.
    assert [phase["phaseType"] for phase in ended["phases"]][-3:] == [
        "UPLOAD_ARTIFACTS",
        "FINALIZING",
        "COMPLETED",
    ]


def test_a_version_that_is_no_docker_tag_fails_the_build_in_build():
    ecr, repository = aws.client("ecr"), unique("mistral8b-vllm")
    ecr.create_repository(repositoryName=repository)

    ended, _ = build(project(repository), "release/1.2")

    assert ended["buildStatus"] == "FAILED"
    [failed] = [phase for phase in ended["phases"] if phase.get("phaseStatus") == "FAILED"]
    assert failed["phaseType"] == "BUILD"
    assert "invalid reference format" in failed["contexts"][0]["message"]
    assert ecr.describe_images(repositoryName=repository)["imageDetails"] == []
