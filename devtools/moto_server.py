"""moto's server with what the platform needs from AWS that moto 5.2 lacks, added as AWS
documents it: tags on API Gateway API keys, CodeBuild builds that run and push their image
(``devtools.local_codebuild``), and ECS deployment alarms (``devtools.local_ecs_alarms``).

moto tags only stages; AWS's TagResource, UntagResource and GetTags take any API Gateway
resource ARN, ``arn:aws:apigateway:<region>::/apikeys/<id>`` among them
(https://docs.aws.amazon.com/apigateway/latest/api/API_TagResource.html). The console binds
a key to its projects with a tag (``api_access.api_keys.set_projects``).

    python -m devtools.moto_server -H 127.0.0.1 -p 5100
"""

import json
from urllib.parse import unquote

from moto import server
from moto.apigateway import urls
from moto.apigateway.responses import APIGatewayResponse

from devtools import local_codebuild, local_ecs_alarms

API_KEY_ARN = "/tags/arn:(?P<partition>[^/]+):apigateway:(?P<region_name>[^/]+)::/apikeys/"
urls.url_paths["{0}" + API_KEY_ARN + "(?P<api_key_id>[^/]+)$"] = APIGatewayResponse.dispatch

_stage_tag_resource = APIGatewayResponse.tag_resource
_stage_untag_resource = APIGatewayResponse.untag_resource
_stage_get_tags = APIGatewayResponse.get_tags


def _api_key(response: APIGatewayResponse):
    if "/apikeys/" not in unquote(response.path):
        return None
    return response.backend.get_api_key(unquote(response.path).rsplit("/", 1)[1])


def tag_resource(self: APIGatewayResponse) -> str:
    key = _api_key(self)
    if key is None:
        return _stage_tag_resource(self)
    key.tags = {**(key.tags or {}), **(self._get_param("tags") or {})}
    return json.dumps({})


def untag_resource(self: APIGatewayResponse) -> str:
    key = _api_key(self)
    if key is None:
        return _stage_untag_resource(self)
    names = self.querystring.get("tagKeys") or []
    key.tags = {name: value for name, value in (key.tags or {}).items() if name not in names}
    return json.dumps({})


def get_tags(self: APIGatewayResponse) -> str:
    key = _api_key(self)
    if key is None:
        return _stage_get_tags(self)
    return json.dumps({"tags": key.tags or {}})


APIGatewayResponse.tag_resource = tag_resource
APIGatewayResponse.untag_resource = untag_resource
APIGatewayResponse.get_tags = get_tags
local_codebuild.install()
local_ecs_alarms.install()

if __name__ == "__main__":
    server.main()
