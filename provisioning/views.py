from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@permission_required("console.view_state", raise_exception=True)
def environment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "provisioning/environment_list.html")


@permission_required("console.view_state", raise_exception=True)
def run_list(request: HttpRequest) -> HttpResponse:
    return render(request, "provisioning/run_list.html")
