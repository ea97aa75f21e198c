#compdef lb-demo-server

autoload -U is-at-least

_lb-demo-server() {
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
'--name=[Name shown in \`Hello from NAME\` and the \`X-Backend\` header \[default\: server-PORT\]]:NAME:_default' \
'--bind=[Address to listen on]:ADDR:_default' \
'--echo[Echo raw TCP bytes instead of answering HTTP]' \
'--proxy-protocol[Expect a PROXY protocol header (version 1 or 2) at the start of every connection, as a backend behind \`"proxy_protocol"\` does; connections without one are closed]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
':port -- TCP port to listen on:_default' \
&& ret=0
}

(( $+functions[_lb-demo-server_commands] )) ||
_lb-demo-server_commands() {
    local commands; commands=()
    _describe -t commands 'lb-demo-server commands' commands "$@"
}

if [ "$funcstack[1]" = "_lb-demo-server" ]; then
    _lb-demo-server "$@"
else
    compdef _lb-demo-server lb-demo-server
fi
