#compdef loadbalancer

autoload -U is-at-least

_loadbalancer() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--config=[Config file. Default\: ./config.json, or the built-in default when that is absent]:PATH:_files' \
'--seed=[Seed of the load balancer'\''s random choices (\`random\`, \`power_of_two\`, probe jitter). Logged at startup; give the logged value to replay a run'\''s choices. Default\: random]:N:_default' \
'--log-format=[Log lines as logfmt text (\`key=value\`, quoted where needed) or one JSON object per line]:FORMAT:((text\:"logfmt\: \`key=value\` pairs, values quoted where needed"
json\:"One JSON object per line"))' \
'--check[Validate the config, print a one-line summary per listener and exit (0 valid, 2 invalid)]' \
'--demo[Also start a demo backend (the \`server\` program) on each backend address of every pool]' \
'--no-cpu-affinity[Leave the workers to the scheduler. By default, with one worker per CPU the process may use, each worker is bound to a CPU of its own and accepts the clients whose packets that CPU handles]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'::port -- Port to listen on; overrides the port of the first listener (the address stays):_default' \
&& ret=0
}

(( $+functions[_loadbalancer_commands] )) ||
_loadbalancer_commands() {
    local commands; commands=()
    _describe -t commands 'loadbalancer commands' commands "$@"
}

if [ "$funcstack[1]" = "_loadbalancer" ]; then
    _loadbalancer "$@"
else
    compdef _loadbalancer loadbalancer
fi
