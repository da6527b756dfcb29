"""ECR: the repository of the inference image."""

from provisioning.resources.base import Resource, ignoring


class Repository(Resource):
    key = "ecr.repository"
    title = "ECR inference image repository"
    service = "ecr"
    base_name = "EcrRepository"

    def desired(self) -> dict:
        return {"scan_on_push": True}

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.describe_repositories(repositoryNames=[self.name]),
            "RepositoryNotFoundException",
        )
        if found is None:
            return None
        repository = found["repositories"][0]
        return {
            "arn": repository["repositoryArn"],
            "uri": repository["repositoryUri"],
            "scan_on_push": repository["imageScanningConfiguration"]["scanOnPush"],
        }

    def create(self, desired: dict) -> None:
        ignoring(
            lambda: self.client.create_repository(
                repositoryName=self.name,
                imageScanningConfiguration={"scanOnPush": desired["scan_on_push"]},
            ),
            "RepositoryAlreadyExistsException",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.put_image_scanning_configuration(
            repositoryName=self.name,
            imageScanningConfiguration={"scanOnPush": desired["scan_on_push"]},
        )

    def delete(self, current: dict) -> None:
        # Images are rebuilt by CodeBuild from the repository's source: not data to keep.
        self.client.delete_repository(repositoryName=self.name, force=True)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"], "uri": current["uri"]}
