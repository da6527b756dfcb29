"""The API key pages: thin views over ``api_access.api_keys``. Operators see keys (never their
values); admins change them."""

import uuid
from datetime import date
from functools import wraps

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from api_access import api_keys
from api_access.models import KeyRotation
from core import permissions as perms
from core.refusals import Refused
from core.views import refused
from provisioning.models import Environment

PAGE_SIZE = 50
VIEW = perms.VIEW_API_KEYS
MANAGE = perms.MANAGE_API_KEYS


def _refusals(view):
    """A refused change or an AWS error becomes a message on the page it came from."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        back = reverse("api-keys")
        if "environment" in kwargs:
            back = reverse("api-key-list", args=[kwargs["environment"]])
        try:
            return view(request, *args, **kwargs)
        except Refused as exc:
            return refused(request, exc, back)
        except (BotoCoreError, ClientError) as exc:
            return refused(request, Refused(f"API Gateway did not answer: {exc}"), back)

    return wrapper


@permission_required(VIEW, raise_exception=True)
def environments(request: HttpRequest) -> HttpResponse:
    found = Environment.objects.all()
    return render(request, "api_access/api_key_environments.html", {"environments": found})


@never_cache
@permission_required(VIEW, raise_exception=True)
def key_list(request: HttpRequest, environment: str) -> HttpResponse:
    """The plan's keys, searched and paged, with this quota period's usage of those shown."""
    env = get_object_or_404(Environment, name=environment)
    query = request.GET.get("q", "")
    context = {"environment": env, "query": query, "error": None}
    try:
        keys = api_keys.matching(api_keys.keys_of(env), query)
        page = Paginator(keys, PAGE_SIZE).get_page(request.GET.get("page"))
        usage = api_keys.usage(env, list(page))
    except Refused as exc:
        context["error"] = str(exc)
    except (BotoCoreError, ClientError) as exc:
        context["error"] = f"AWS did not answer: {exc}"
    else:
        context.update(
            page=page,
            rows=[(key, usage[key.id]) for key in page],
            quota=api_keys.quota_of(env),
            total=len(keys),
        )
    template = "api_access/api_keys.html"
    if request.htmx and not request.htmx.boosted:
        template = "api_access/_api_key_rows.html"
    return render(request, template, context)


@never_cache
@permission_required(VIEW, raise_exception=True)
@_refusals
def key_detail(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=environment)
    key = api_keys.find(env, key_id)
    aws_rows, aws_note = api_keys.aws_usage(env, key)
    impact = api_keys.impact(env, key)
    context = {
        "environment": env,
        "key": key,
        "usage": api_keys.usage(env, [key])[key.id],
        "quota": api_keys.quota_of(env),
        "daily": api_keys.daily_usage(env, key),
        "impact": impact,
        "projects_to_bind": " ".join(api_keys.projects_to_bind(key, impact)),
        "aws_rows": aws_rows,
        "aws_note": aws_note,
        "rotations": KeyRotation.objects.filter(
            Q(old_key_id=key.id) | Q(new_key_id=key.id), environment=env
        ),
        "rotation_id": uuid.uuid4(),
    }
    return render(request, "api_access/api_key_detail.html", context)


@never_cache
@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_create(request: HttpRequest, environment: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=environment)
    form = {
        "request_id": uuid.uuid4(),
        "name": "",
        "project": "",
        "owner": "",
        "expires": "",
        "projects": "",
    }
    if request.method == "POST":
        form = {name: request.POST.get(name, "").strip() for name in form}
        try:
            key_id, token = api_keys.create(
                env,
                name=form["name"],
                project=form["project"],
                owner=form["owner"],
                expires=_date(form["expires"]),
                actor=request.user,
                request_id=form["request_id"],
                projects_text=form["projects"],
            )
        except Refused as exc:
            messages.error(request, str(exc))
        else:
            return redirect(f"{reverse('api-key-created', args=[env.name, key_id])}?t={token}")
    return render(request, "api_access/api_key_form.html", {"environment": env, "form": form})


@require_POST
@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_projects(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=environment)
    key = api_keys.find(env, key_id)
    back = redirect("api-key-detail", env.name, key.id)
    try:
        api_keys.set_projects(env, key, request.POST.get("projects", ""), actor=request.user)
    except Refused as exc:
        messages.error(request, str(exc))
        return back
    messages.success(request, f"{key.name} may now file only under the projects shown.")
    return back


@never_cache
@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_created(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    """The new key's value, shown once to the admin who made it."""
    env = get_object_or_404(Environment, name=environment)
    key = api_keys.find(env, key_id)
    revealed = api_keys.reveal(request.GET.get("t", ""), request.user)
    value = revealed[1] if revealed and revealed[0] == key.id else None
    response = render(
        request, "api_access/api_key_created.html", {"environment": env, "key": key, "value": value}
    )
    response["Cache-Control"] = "no-store"  # not even the browser keeps the value
    return response


@require_POST
@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_enable(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=environment)
    key = api_keys.find(env, key_id)
    api_keys.set_enabled(env, key, True, actor=request.user)
    messages.success(request, f"{key} is enabled.")
    return redirect("api-key-detail", env.name, key.id)


@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_disable(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    """GET shows what would break (the last 7 days of traffic); POST disables."""
    return _confirmed(request, environment, key_id, "disable")


@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_delete(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    """GET shows what would break; POST with the key's name typed deletes."""
    return _confirmed(request, environment, key_id, "delete")


def _confirmed(request: HttpRequest, environment: str, key_id: str, action: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=environment)
    key = api_keys.find(env, key_id)
    if request.method == "POST":
        if action == "delete":
            try:
                typed = request.POST.get("name", "")
                api_keys.delete(env, key, typed_name=typed, actor=request.user)
            except Refused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"{key} is deleted.")
                return redirect("api-key-list", env.name)
        else:
            api_keys.set_enabled(env, key, False, actor=request.user)
            messages.success(request, f"{key} is disabled.")
            return redirect("api-key-detail", env.name, key.id)
    context = {
        "environment": env,
        "key": key,
        "action": action,
        "impact": api_keys.impact(env, key),
    }
    return render(request, "api_access/api_key_confirm.html", context)


@permission_required(MANAGE, raise_exception=True)
@_refusals
def key_rotate(request: HttpRequest, environment: str, key_id: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=environment)
    key = api_keys.find(env, key_id)
    fresh = api_keys.fresh_expiry(key)
    form = {
        "rotation_id": uuid.uuid4(),
        "grace_hours": "24",
        "quiet_minutes": "30",
        "expires": fresh.isoformat() if fresh else "",
    }
    if request.method == "POST":
        form = {name: request.POST.get(name, "").strip() for name in form}
        try:
            rotation, token = api_keys.rotate(
                env,
                key,
                rotation_id=form["rotation_id"],
                grace_hours=_whole(form["grace_hours"], "The grace period"),
                quiet_minutes=_whole(form["quiet_minutes"], "The quiet time"),
                expires=_date(form["expires"]),
                actor=request.user,
            )
        except Refused as exc:
            messages.error(request, str(exc))
        else:
            if not rotation.new_key_id:
                messages.info(request, "This rotation is still being made: reload in a moment.")
                return redirect("api-key-detail", env.name, key.id)
            url = reverse("api-key-created", args=[env.name, rotation.new_key_id])
            return redirect(f"{url}?t={token or ''}")
    context = {"environment": env, "key": key, "form": form, "impact": api_keys.impact(env, key)}
    return render(request, "api_access/api_key_rotate.html", context)


@require_POST
@permission_required(MANAGE, raise_exception=True)
@_refusals
def rotation_finish(request: HttpRequest, environment: str, rotation_id: uuid.UUID) -> HttpResponse:
    """End a grace period now: the old key is disabled at once."""
    env = get_object_or_404(Environment, name=environment)
    rotation = get_object_or_404(KeyRotation, pk=rotation_id, environment=env)
    reason = f"forced by {request.user.get_username()}"
    if api_keys.finish(rotation, actor=request.user, reason=reason):
        messages.success(request, f"{rotation.old_key_name}'s old key is disabled.")
    else:
        messages.error(request, "This rotation was already finished.")
    return redirect("api-key-detail", env.name, rotation.new_key_id or rotation.old_key_id)


def _date(value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Refused(f"{value!r} is not a date like 2027-03-31.") from None


def _whole(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Refused(f"{what} must be a whole number, not {value!r}.") from None
