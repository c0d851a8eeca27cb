"""Views for the tests: a CSRF-protected form post and a file upload."""

import hashlib

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_POST


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello from django", content_type="text/plain")


@require_POST
def greet(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello {request.POST.get('name', '?')}", content_type="text/plain")


@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    f = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in f.chunks():
        digest.update(chunk)
    return JsonResponse({"name": f.name, "size": f.size, "sha256": digest.hexdigest(),
                         "title": request.POST.get("title", "")})
