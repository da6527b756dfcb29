import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from console.roles import ADMIN


class Command(BaseCommand):
    help = "Create the local admin on first start and print its credentials once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            return
        password = secrets.token_urlsafe(12)
        user = users.objects.create_superuser(username=username, email="", password=password)
        user.groups.add(Group.objects.get(name=ADMIN))
        # Printed once, never stored: only the hash is kept.
        self.stdout.write(
            self.style.SUCCESS(f"Created the local admin. Log in as {username} / {password}")
        )
