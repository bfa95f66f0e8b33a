# Sourced by the docker/bin start scripts: refuse .env.example's placeholders at start, with the fix.
# Compose's ${VAR:?} only catches a variable that is unset or empty, not one left at "change-me".
refuse_placeholder() {  # NAME VALUE: exit when VALUE is still the placeholder
    case "$2" in
        change-me*)
            echo "$1 is still .env.example's placeholder ('change-me'): choose your own in .env, e.g." \
                "python -c 'import secrets; print(secrets.token_urlsafe(24))'" >&2
            exit 1 ;;
    esac
}
