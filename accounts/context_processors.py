from .roles import Ability, role_allows


def portal(request):
    """The signed-in user's membership and what their role allows, for the layout's navigation."""
    user = getattr(request, "user", None)
    membership = (
        getattr(user, "membership", None) if user is not None and user.is_authenticated else None
    )
    abilities = {a: role_allows(membership.role, a) for a in Ability.values} if membership else {}
    return {"membership": membership, "abilities": abilities}
