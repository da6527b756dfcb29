"""API Gateway (section 7): ``/v1/{proxy+}`` to the NLB by VPC link, behind API keys.

Clients must send the three audit headers (a request validator enforces them) and an API
key; the backend receives API Gateway's request id and the API key id as headers, with the
gateway's secret that vouches for them (``secretsmanager.GatewaySecret``).
"""

import hashlib
import json

from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws
from centralllm.audit import contract
from provisioning.resources.base import (
    ProvisioningError,
    Resource,
    Spec,
    ignoring,
    in_declared_order,
    projected,
    wait_until,
)
from provisioning.resources.elbv2 import LISTENER_PORT
from provisioning.resources.secretsmanager import GatewaySecret, fingerprint, secret_value

STAGE = "prod"
PROXY_PATH = "/v1/{proxy+}"
VALIDATOR = "required-headers"
# Buffered, API Gateway holds a completion until it ends and cuts it at 29 s. Streamed, the
# integration may last up to 15 minutes, with an idle timeout of 5 minutes on Regional (and
# private) endpoints but 30 s on edge-optimized ones: hence a Regional API. See
# https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html
ENDPOINT_TYPE = "REGIONAL"
TRANSFER_MODE = "STREAM"
INTEGRATION_TIMEOUT_MS = 900_000
# A static value, single-quoted as API Gateway wants it; declared and read by its fingerprint.
SECRET_PARAMETER = f"integration.request.header.{contract.GATEWAY_SECRET_HEADER}"


def _find(pages, name: str) -> dict | None:
    return next(
        (item for page in pages for item in page.get("items", []) if item["name"] == name), None
    )


class VpcLink(Resource):
    key = "apigateway.vpc_link"
    title = "API Gateway VPC link"
    service = "apigateway"
    base_name = "VpcLink"
    depends_on = ("elbv2.load_balancer",)
    typical_create_seconds = 180  # "typically takes 2-4 minutes"

    def desired(self) -> dict:
        # Creating a VPC link takes minutes and the API cannot use it before: a link still
        # PENDING (an apply interrupted while waiting) is waited for by update.
        return {"targets": [self.output("elbv2.load_balancer")["arn"]], "status": "AVAILABLE"}

    def _found(self) -> dict | None:
        return _find(self.client.get_paginator("get_vpc_links").paginate(), self.name)

    def read(self) -> dict | None:
        link = self._found()
        if link is None or link.get("status") == "DELETING":
            return None
        # A FAILED link is reported (update says so) rather than replaced by a twin of its name.
        return {
            "id": link["id"],
            "targets": link["targetArns"],
            "status": link["status"],
            "reason": link.get("statusMessage", ""),
        }

    def create(self, desired: dict) -> None:
        self.client.create_vpc_link(name=self.name, targetArns=desired["targets"])

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "targets" in fields:
            super().update(desired, current, fields)
        link_id = current["id"]
        if current["status"] == "FAILED":
            # Made while its NLB was still provisioning (an apply of an earlier version, or by
            # hand): a failed link never recovers, and its name is free once it is gone.
            self.ctx.say(f"the VPC link failed ({current.get('reason', '')}): making it again")
            self.delete(current)
            self.create(desired)
            link_id = self._found()["id"]
        wait_until(
            self.ctx,
            lambda: self._available(link_id),
            what="the VPC link to become available",
            usually="2-4 min",
            timeout_seconds=20 * 60,
        )

    def _available(self, link_id: str) -> bool:
        link = self.client.get_vpc_link(vpcLinkId=link_id)
        if link["status"] == "FAILED":
            raise ProvisioningError(
                f"the VPC link failed ({link.get('statusMessage', 'no reason given')}): "
                "apply again to make it anew"
            )
        return link["status"] == "AVAILABLE"

    def delete(self, current: dict) -> None:
        self.client.delete_vpc_link(vpcLinkId=current["id"])
        # The load balancer cannot be deleted while the link still uses it.
        wait_until(
            self.ctx,
            lambda: self._found() is None,
            what="the VPC link to be deleted",
            usually="1-2 min",
            timeout_seconds=20 * 60,
        )

    def outputs(self, current: dict) -> dict:
        return {"id": current["id"]}


class RestApi(Resource):
    """The REST API with its resources, method, request validator and integration."""

    key = "apigateway.rest_api"
    title = "API Gateway REST API"
    service = "apigateway"
    base_name = "RestApi"
    depends_on = (
        "apigateway.vpc_link",
        "elbv2.load_balancer",
        "elbv2.listener",
        GatewaySecret.key,
    )

    def desired(self) -> dict:
        headers = {f"method.request.header.{name}": True for name in contract.REQUIRED_HEADERS}
        api_key_id = contract.API_KEY_ID_HEADER
        return {
            "endpoint_types": [ENDPOINT_TYPE],
            "paths": ["/", "/v1", PROXY_PATH],
            "validator": {"validateRequestParameters": True, "validateRequestBody": False},
            "method": {
                "httpMethod": "ANY",
                "authorizationType": "NONE",
                "apiKeyRequired": True,
                "requestParameters": {"method.request.path.proxy": True, **headers},
            },
            "integration": {
                "type": "HTTP_PROXY",
                "httpMethod": "ANY",
                "uri": f"http://{self.output('elbv2.load_balancer')['dns']}:{LISTENER_PORT}"
                "/v1/{proxy}",
                "connectionType": "VPC_LINK",
                "timeoutInMillis": INTEGRATION_TIMEOUT_MS,
                "requestParameters": {
                    "integration.request.path.proxy": "method.request.path.proxy",
                    f"integration.request.header.{contract.REQUEST_ID_HEADER}": "context.requestId",
                    f"integration.request.header.{api_key_id}": "context.identity.apiKeyId",
                    SECRET_PARAMETER: self.output(GatewaySecret.key)["fingerprint"],
                },
            },
            "validator_attached": True,
            "vpc_link": self.output("apigateway.vpc_link")["id"],
            "response_transfer_mode": TRANSFER_MODE,
        }

    def read(self) -> dict | None:
        api = _find(self.client.get_paginator("get_rest_apis").paginate(), self.name)
        if api is None:
            return None
        resources = self.client.get_resources(restApiId=api["id"], limit=500)["items"]
        by_path = {item["path"]: item["id"] for item in resources}
        validators = self.client.get_request_validators(restApiId=api["id"])["items"]
        validator = next((item for item in validators if item["name"] == VALIDATOR), None)
        method = None
        if PROXY_PATH in by_path:
            method = ignoring(
                lambda: self.client.get_method(
                    restApiId=api["id"], resourceId=by_path[PROXY_PATH], httpMethod="ANY"
                ),
                "NotFoundException",
            )
        shape = self.desired()
        integration = (method or {}).get("methodIntegration", {})
        current = {
            "id": api["id"],
            "resource_ids": by_path,
            "validator_id": validator["id"] if validator else None,
            "paths": in_declared_order(by_path, shape["paths"]),
            "validator": projected(validator, shape["validator"]) if validator else None,
            "method": projected(method, shape["method"]) if method else None,
            "integration": _fingerprinted(projected(integration, shape["integration"]))
            if method
            else None,
            "validator_attached": bool(validator)
            and (method or {}).get("requestValidatorId") == validator["id"],
        }
        # The local AWS does not keep the VPC link of an integration.
        if "connectionId" in integration or not method:
            current["vpc_link"] = integration.get("connectionId")
        # Nor its transfer mode; AWS's default is BUFFERED.
        if method and not aws.is_stand_in():
            current["response_transfer_mode"] = integration.get("responseTransferMode", "BUFFERED")
        if "endpointConfiguration" in api:
            current["endpoint_types"] = api["endpointConfiguration"]["types"]
        return current

    def create(self, desired: dict) -> None:
        self.client.create_rest_api(
            name=self.name,
            endpointConfiguration={"types": desired["endpoint_types"]},
            apiKeySource="HEADER",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        apigateway, api = self.client, current["id"]
        if "endpoint_types" in fields:
            # An API has one endpoint type; AWS changes it in place (apigateway-api-migration).
            [found] = current["endpoint_types"]
            apigateway.update_rest_api(
                restApiId=api,
                patchOperations=[
                    {
                        "op": "replace",
                        "path": f"/endpointConfiguration/types/{found}",
                        "value": ENDPOINT_TYPE,
                    }
                ],
            )
        ids = dict(current["resource_ids"])
        for path in desired["paths"]:
            if path not in ids:
                parent, _, part = path.rpartition("/")
                made = apigateway.create_resource(
                    restApiId=api, parentId=ids[parent or "/"], pathPart=part
                )
                ids[path] = made["id"]
        validator_id = current["validator_id"]
        if validator_id is None:
            validator_id = apigateway.create_request_validator(
                restApiId=api, name=VALIDATOR, **desired["validator"]
            )["id"]
        elif "validator" in fields:
            apigateway.update_request_validator(
                restApiId=api,
                requestValidatorId=validator_id,
                patchOperations=[
                    {"op": "replace", "path": f"/{name}", "value": str(value).lower()}
                    for name, value in desired["validator"].items()
                ],
            )
        method_fields = {
            "method",
            "integration",
            "vpc_link",
            "validator_attached",
            "response_transfer_mode",
        }
        if method_fields & set(fields) or not current["method"]:
            # A method is replaced whole: put_method refuses to overwrite an existing one.
            target = {"restApiId": api, "resourceId": ids[PROXY_PATH], "httpMethod": "ANY"}
            if current["method"] is not None:
                apigateway.delete_method(**target)
            method = {key: value for key, value in desired["method"].items() if key != "httpMethod"}
            apigateway.put_method(**target, **method, requestValidatorId=validator_id)
            integration = dict(
                desired["integration"],
                connectionId=desired["vpc_link"],
                responseTransferMode=desired["response_transfer_mode"],
            )
            integration["integrationHttpMethod"] = integration.pop("httpMethod")
            secret = secret_value(self.ctx)
            integration["requestParameters"] = {
                **integration["requestParameters"],
                SECRET_PARAMETER: f"'{secret}'",
            }
            try:
                apigateway.put_integration(**target, **integration)
            except (ClientError, BotoCoreError) as exc:
                if secret not in str(exc):
                    raise
                # API Gateway quotes a mapping it refuses: the run log must not show it.
                raise ProvisioningError(
                    "API Gateway refused the integration; its message quoted the gateway "
                    "secret, so it is not shown"
                ) from None
        # Callers see a change only once it is deployed; the stage step deploys a new API.
        if ignoring(
            lambda: apigateway.get_stage(restApiId=api, stageName=STAGE), "NotFoundException"
        ):
            apigateway.create_deployment(
                restApiId=api, stageName=STAGE, description=deployment_description(desired)
            )

    def delete(self, current: dict) -> None:
        self.client.delete_rest_api(restApiId=current["id"])

    def outputs(self, current: dict) -> dict:
        return {"id": current["id"], "deployment": deployment_description(self.desired())}


def _fingerprinted(integration: dict) -> dict:
    """The integration as plans show it: the gateway secret's value by its fingerprint."""
    parameters = integration.get("requestParameters") or {}
    if SECRET_PARAMETER not in parameters:
        return integration
    value = parameters[SECRET_PARAMETER].strip("'")
    return {
        **integration,
        "requestParameters": {**parameters, SECRET_PARAMETER: fingerprint(value)},
    }


def deployment_description(declared: dict) -> str:
    """Names the API configuration a deployment captured: a new one is made when it changes."""
    fingerprint = hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()
    return f"Central LLM API configuration {fingerprint[:16]}"


class Stage(Resource):
    """The ``prod`` stage, on a deployment of the API as currently declared."""

    key = "apigateway.stage"
    title = "API Gateway prod stage"
    service = "apigateway"
    depends_on = ("apigateway.rest_api",)

    def desired(self) -> dict:
        return {"description": self.output("apigateway.rest_api")["deployment"]}

    def read(self) -> dict | None:
        api = self.output("apigateway.rest_api")["id"]
        stage = ignoring(
            lambda: self.client.get_stage(restApiId=api, stageName=STAGE), "NotFoundException"
        )
        if stage is None:
            return None
        deployment = self.client.get_deployment(restApiId=api, deploymentId=stage["deploymentId"])
        return {"description": deployment.get("description", "")}

    def create(self, desired: dict) -> None:
        self.client.create_deployment(
            restApiId=self.output("apigateway.rest_api")["id"],
            stageName=STAGE,
            description=desired["description"],
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.create(desired)

    def delete(self, current: dict) -> None:
        self.client.delete_stage(
            restApiId=self.output("apigateway.rest_api")["id"], stageName=STAGE
        )

    def outputs(self, current: dict) -> dict:
        api = self.output("apigateway.rest_api")["id"]
        url = f"https://{api}.execute-api.{self.spec.region}.amazonaws.com/{STAGE}"
        return {"name": STAGE, "url": url}


def plan_limits(spec: Spec) -> dict:
    """The throttle and quota a usage plan declares; the quota includes the increases in force."""
    return {
        "burst_limit": spec.throttle_burst_limit,
        "rate_limit": float(spec.throttle_rate_limit),
        "quota": spec.quota_limit + spec.quota_extra,
        "quota_period": spec.quota_period,
    }


class UsagePlan(Resource):
    key = "apigateway.usage_plan"
    title = "API Gateway usage plan"
    service = "apigateway"
    base_name = "UsagePlan"
    depends_on = ("apigateway.stage",)

    def desired(self) -> dict:
        return {
            "stages": [f"{self.output('apigateway.rest_api')['id']}:{STAGE}"],
            **plan_limits(self.spec),
        }

    def read(self) -> dict | None:
        plan = _find(self.client.get_paginator("get_usage_plans").paginate(), self.name)
        if plan is None:
            return None
        return {
            "id": plan["id"],
            "stages": sorted(
                f"{item['apiId']}:{item['stage']}" for item in plan.get("apiStages", [])
            ),
            "burst_limit": plan.get("throttle", {}).get("burstLimit"),
            "rate_limit": plan.get("throttle", {}).get("rateLimit"),
            "quota": plan.get("quota", {}).get("limit"),
            "quota_period": plan.get("quota", {}).get("period"),
        }

    def create(self, desired: dict) -> None:
        api, stage = desired["stages"][0].split(":")
        self.client.create_usage_plan(
            name=self.name,
            apiStages=[{"apiId": api, "stage": stage}],
            throttle={"burstLimit": desired["burst_limit"], "rateLimit": desired["rate_limit"]},
            quota={"limit": desired["quota"], "period": desired["quota_period"]},
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        stages = set(desired["stages"]), set(current["stages"])
        operations = [
            {"op": "replace", "path": "/throttle/burstLimit", "value": str(desired["burst_limit"])},
            # A whole number (it is declared as one): the local AWS cannot parse "7.0".
            {
                "op": "replace",
                "path": "/throttle/rateLimit",
                "value": f"{desired['rate_limit']:.0f}",
            },
            {"op": "replace", "path": "/quota/limit", "value": str(desired["quota"])},
            {"op": "replace", "path": "/quota/period", "value": desired["quota_period"]},
            *(
                {"op": "add", "path": "/apiStages", "value": stage}
                for stage in stages[0] - stages[1]
            ),
            *(
                {"op": "remove", "path": "/apiStages", "value": stage}
                for stage in stages[1] - stages[0]
            ),
        ]
        self.client.update_usage_plan(usagePlanId=current["id"], patchOperations=operations)

    def delete(self, current: dict) -> None:
        # AWS refuses to delete a plan that still has API stages (aws/aws-sdk-js#3841).
        if current["stages"]:
            self.client.update_usage_plan(
                usagePlanId=current["id"],
                patchOperations=[
                    {"op": "remove", "path": "/apiStages", "value": stage}
                    for stage in current["stages"]
                ],
            )
        self.client.delete_usage_plan(usagePlanId=current["id"])

    def outputs(self, current: dict) -> dict:
        return {"id": current["id"]}


class ApiKey(Resource):
    """The first API key. Its value is never read here: the console shows keys without it."""

    key = "apigateway.api_key"
    title = "API Gateway first API key"
    service = "apigateway"
    base_name = "ApiKey"

    def desired(self) -> dict:
        return {"enabled": True}

    def read(self) -> dict | None:
        pages = self.client.get_paginator("get_api_keys").paginate(nameQuery=self.name)
        key = _find(pages, self.name)
        return {"id": key["id"], "enabled": key["enabled"]} if key else None

    def create(self, desired: dict) -> None:
        self.client.create_api_key(name=self.name, enabled=desired["enabled"])

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.update_api_key(
            apiKey=current["id"],
            patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}],
        )

    def delete(self, current: dict) -> None:
        self.client.delete_api_key(apiKey=current["id"])

    def outputs(self, current: dict) -> dict:
        return {"id": current["id"]}


class UsagePlanKey(Resource):
    key = "apigateway.usage_plan_key"
    title = "API Gateway usage plan key"
    service = "apigateway"
    depends_on = ("apigateway.usage_plan", "apigateway.api_key")

    def desired(self) -> dict:
        return {"type": "API_KEY"}

    def _ids(self) -> dict:
        return {
            "usagePlanId": self.output("apigateway.usage_plan")["id"],
            "keyId": self.output("apigateway.api_key")["id"],
        }

    def read(self) -> dict | None:
        found = ignoring(lambda: self.client.get_usage_plan_key(**self._ids()), "NotFoundException")
        return {"type": found["type"]} if found else None

    def create(self, desired: dict) -> None:
        self.client.create_usage_plan_key(**self._ids(), keyType=desired["type"])

    def delete(self, current: dict) -> None:
        self.client.delete_usage_plan_key(**self._ids())
