"""CodeBuild: the project that builds the inference image and pushes it to ECR."""

from provisioning.resources.base import Resource, retrying, role_not_ready

BUILDSPEC = "inference/buildspec.yml"


class Project(Resource):
    key = "codebuild.project"
    title = "CodeBuild image build project"
    service = "codebuild"
    base_name = "CodeBuildProject"
    depends_on = ("iam.codebuild_role", "ecr.repository")

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return (BUILDSPEC,)

    def desired(self) -> dict:
        return {
            "source": {
                "type": "GITHUB",
                "location": self.spec.source_repository,
                # Inline, with this environment's names filled in.
                "buildspec": self.ctx.render(BUILDSPEC),
            },
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_LARGE",
                "privilegedMode": True,  # docker build needs it
            },
            "serviceRole": self.output("iam.codebuild_role")["arn"],
        }

    def read(self) -> dict | None:
        found = self.client.batch_get_projects(names=[self.name])["projects"]
        if not found:
            return None
        project = found[0]
        source = project.get("source", {})
        environment = project.get("environment", {})
        return {
            "arn": project["arn"],
            "source": {key: source.get(key) for key in ("type", "location", "buildspec")},
            "artifacts": {"type": project.get("artifacts", {}).get("type")},
            "environment": {
                key: environment.get(key)
                for key in ("type", "image", "computeType", "privilegedMode")
            },
            "serviceRole": project.get("serviceRole"),
        }

    def create(self, desired: dict) -> None:
        retrying(
            self.ctx,
            lambda: self.client.create_project(name=self.name, **desired),
            retry_if=role_not_ready,
            why="the new role is not assumable by CodeBuild yet",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.update_project(name=self.name, **desired)

    def delete(self, current: dict) -> None:
        self.client.delete_project(name=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}
