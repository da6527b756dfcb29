from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from provisioning.models import Environment


@permission_required("console.view_state", raise_exception=True)
def environment_list(request: HttpRequest) -> HttpResponse:
    environments = Environment.objects.all()
    return render(request, "provisioning/environment_list.html", {"environments": environments})


@permission_required("console.view_state", raise_exception=True)
def run_list(request: HttpRequest) -> HttpResponse:
    return render(request, "provisioning/run_list.html")
