from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@permission_required("console.view_audit", raise_exception=True)
def audit_home(request: HttpRequest) -> HttpResponse:
    return render(request, "audit_explorer/home.html")
