#ifndef HL_COMMANDS_H
#define HL_COMMANDS_H

/* Each takes argv starting at the command's name; returns the process exit code. */
int cmd_verify(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_world(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_vae_stats(int argc, char **argv);
int cmd_convert(int argc, char **argv);

#endif
